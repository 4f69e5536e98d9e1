//! A list that keeps its first `N` items inline and spills the rest to the heap.
//!
//! A chat body has a dozen top-level members and a rewrite a handful of edits; keeping them
//! inline means extraction and rewriting allocate nothing but the output body. Only a body with
//! more than `N` members (or a pathological number of duplicate keys) spills.

/// Up to `N` items inline, the rest in a `Vec`.
#[derive(Debug, Clone)]
pub(crate) struct SmallList<T, const N: usize> {
    inline: [T; N],
    len: usize,
    spill: Vec<T>,
}

impl<T: Copy + Default, const N: usize> Default for SmallList<T, N> {
    fn default() -> Self {
        SmallList {
            inline: [T::default(); N],
            len: 0,
            spill: Vec::new(),
        }
    }
}

impl<T: Copy + Default, const N: usize> SmallList<T, N> {
    /// Appends an item.
    #[inline]
    pub(crate) fn push(&mut self, item: T) {
        if self.len < N {
            self.inline[self.len] = item;
        } else {
            self.spill.push(item);
        }
        self.len += 1;
    }

    /// How many items there are.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The item at `i`.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        if i < N.min(self.len) {
            self.inline.get(i)
        } else {
            self.spill.get(i.checked_sub(N)?)
        }
    }

    /// The items in order, mutably.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        let n = self.len.min(N);
        self.inline[..n].iter_mut().chain(self.spill.iter_mut())
    }

    /// The items in order.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + '_ {
        self.inline[..self.len.min(N)]
            .iter()
            .chain(self.spill.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spills_in_order() {
        let mut l: SmallList<u32, 3> = SmallList::default();
        for i in 0..10 {
            l.push(i);
        }
        assert_eq!(l.len(), 10);
        assert_eq!(
            l.iter().copied().collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
        assert_eq!(l.get(2), Some(&2));
        assert_eq!(l.get(7), Some(&7));
        assert_eq!(l.get(10), None);
        assert_eq!(l.iter().next_back(), Some(&9));
    }
}
