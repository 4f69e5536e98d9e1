//! Builds the sticky table of a 3-variant route (`tenant_router`'s 33/33/34) `count` times with
//! one builder, for instruction counts under callgrind, where the shared machine's noise hides
//! wall-clock differences:
//!
//! ```bash
//! valgrind --tool=callgrind target/release/sticky_build_count new 10
//! valgrind --tool=callgrind target/release/sticky_build_count race 10
//! ```
//!
//! (minus the same with count 0, over 10, is one build). Also prints the wall-clock median and
//! worst of the builds.

use std::hint::black_box;
use std::time::{Duration, Instant};

use abroute::sticky::StickyTable;

fn main() {
    let mut args = std::env::args().skip(1);
    let builder = args.next().unwrap_or_else(|| "new".to_owned());
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let mut times: Vec<Duration> = Vec::with_capacity(count);
    for i in 0..count {
        let salt = format!("tenant-{i}\0default");
        let ids = [format!("t{i}-a"), format!("t{i}-b"), format!("t{i}-c")];
        let variants = [
            (ids[0].as_str(), 33),
            (ids[1].as_str(), 33),
            (ids[2].as_str(), 34),
        ];
        let t = Instant::now();
        let table = match builder.as_str() {
            "race" => StickyTable::new_by_race(salt.as_bytes(), &variants),
            _ => StickyTable::new(salt.as_bytes(), &variants),
        };
        times.push(t.elapsed());
        black_box(table.map(|t| t.len()).unwrap_or(0));
    }
    times.sort_unstable();
    if let (Some(median), Some(worst)) = (times.get(times.len() / 2), times.last()) {
        println!("{builder}: {count} builds, median {median:.2?}, worst {worst:.2?}");
    }
}
