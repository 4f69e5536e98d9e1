"""The official OpenAI and Anthropic Python SDKs against a running abroute gateway.

tests/sdk.rs starts the gateway (the embedded default, and one whose provider is the standalone
`abroute mock` over loopback) and runs this file with unittest. By hand:

    pip install -r crates/abroute-gateway/tests/sdk/requirements.txt
    cargo run --release -p abroute-gateway -- serve &   # the demo on 127.0.0.1:8080
    python3 crates/abroute-gateway/tests/sdk/test_sdk.py

Environment:
    ABROUTE_SDK_BASE           the gateway (default `http://127.0.0.1:8080`, the demo)
    ABROUTE_SDK_FAILING_MODEL  a model whose upstream fails (answers 5xx, or whose provider is
                               down); the failover test routes to it with a working backup.
                               Without it that test is skipped.
    ABROUTE_SDK_BACKUP_MODEL   the backup (default `openai/gpt-4o-mini`)

The gateway must serve the seed router `compare-frontier-models` (33/33/34 across
openai/gpt-4o-mini, openai/gpt-3.5-turbo and openai/gpt-4.1) with auth off, its upstreams
answering like the built-in mock (the reply names the model: "Hello! This is gpt-4.1, ...").
"""

import json
import os
import unittest
import urllib.request

import anthropic
import openai

BASE = os.environ.get("ABROUTE_SDK_BASE", "http://127.0.0.1:8080").rstrip("/")
FAILING = os.environ.get("ABROUTE_SDK_FAILING_MODEL")
BACKUP = os.environ.get("ABROUTE_SDK_BACKUP_MODEL", "openai/gpt-4o-mini")

ROUTER = "compare-frontier-models"
MODEL = "inworld/" + ROUTER
SEED_MODELS = {"gpt-4o-mini", "gpt-3.5-turbo", "gpt-4.1"}
SEED_VARIANTS = {"openai/gpt-4o-mini-a", "openai/gpt-3.5-turbo-b", "openai/gpt-4.1-c"}
# The mock's reply is ten words, one token each.
REPLY_TOKENS = 10
HELLO = [{"role": "user", "content": "Hello!"}]
DECISION_HEADERS = (
    "x-abroute-router",
    "x-abroute-route",
    "x-abroute-variant",
    "x-abroute-assigned-variant",
    "x-abroute-model",
    "x-abroute-version",
)

# Auth is off: any key works. No retries, so that a failure shows as it happened.
oai = openai.OpenAI(base_url=BASE + "/v1", api_key="sk-abroute-sdk-test", max_retries=0, timeout=30)
ant = anthropic.Anthropic(base_url=BASE, api_key="sk-abroute-sdk-test", max_retries=0, timeout=30)


def served(text, model):
    """The mock's reply names the model that served."""
    return f"This is {model}," in text


def decision(headers):
    """The decision headers, all of them present."""
    return {name: headers[name] for name in DECISION_HEADERS}


class Chat(unittest.TestCase):
    """OpenAI chat completions."""

    def test_plain(self):
        c = oai.chat.completions.create(model=MODEL, messages=HELLO)
        self.assertEqual(c.object, "chat.completion")
        self.assertIn(c.model, SEED_MODELS)
        choice = c.choices[0]
        self.assertEqual(choice.message.role, "assistant")
        self.assertTrue(served(choice.message.content, c.model), choice.message.content)
        self.assertEqual(choice.finish_reason, "stop")
        self.assertEqual(c.usage.completion_tokens, REPLY_TOKENS)
        self.assertGreater(c.usage.prompt_tokens, 0)
        self.assertEqual(c.usage.total_tokens, c.usage.prompt_tokens + c.usage.completion_tokens)
        # Inworld's metadata, merged into the answer.
        meta = c.metadata
        self.assertEqual(meta["router"], ROUTER)
        self.assertEqual(meta["served_model_id"], "openai/" + c.model)
        self.assertTrue(meta["attempts"][0]["success"])

    def test_streamed(self):
        chunks = list(oai.chat.completions.create(model=MODEL, messages=HELLO, stream=True))
        self.assertTrue(all(ch.object == "chat.completion.chunk" for ch in chunks))
        self.assertEqual(len({ch.id for ch in chunks}), 1, "one id for the whole stream")
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        model = chunks[0].model
        self.assertTrue(served(text, model), text)
        finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices]
        self.assertEqual([f for f in finishes if f], ["stop"])
        self.assertTrue(all(ch.usage is None for ch in chunks), "no usage unless asked")
        # The gateway's metadata chunk comes last, with no choices.
        last = chunks[-1]
        self.assertEqual(last.choices, [])
        self.assertEqual(last.metadata["served_model_id"], "openai/" + model)

    def test_streamed_with_usage(self):
        chunks = list(
            oai.chat.completions.create(
                model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
            )
        )
        with_usage = [ch for ch in chunks if ch.usage is not None]
        self.assertEqual(len(with_usage), 1, "one usage chunk")
        usage = with_usage[0]
        self.assertEqual(usage.choices, [])
        self.assertEqual(usage.usage.completion_tokens, REPLY_TOKENS)
        self.assertEqual(
            usage.usage.total_tokens, usage.usage.prompt_tokens + usage.usage.completion_tokens
        )
        deltas = [ch.choices[0].delta.content for ch in chunks if ch.choices and ch.choices[0].delta.content]
        self.assertEqual(len(deltas), REPLY_TOKENS)

    def test_max_tokens_cuts_with_length(self):
        c = oai.chat.completions.create(model=MODEL, messages=HELLO, max_completion_tokens=3)
        self.assertEqual(c.choices[0].finish_reason, "length")
        self.assertEqual(c.choices[0].message.content, "Hello! This is")
        self.assertEqual(c.usage.completion_tokens, 3)
        chunks = list(oai.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=2, stream=True))
        finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
        self.assertEqual(finishes, ["length"])


class Responses(unittest.TestCase):
    """OpenAI's Responses API."""

    def test_plain(self):
        r = oai.responses.create(model=MODEL, input="Hello!")
        self.assertEqual(r.object, "response")
        self.assertEqual(r.status, "completed")
        self.assertIn(r.model, SEED_MODELS)
        self.assertTrue(served(r.output_text, r.model), r.output_text)
        self.assertEqual(r.output[0].type, "message")
        self.assertEqual(r.output[0].content[0].type, "output_text")
        self.assertEqual(r.usage.output_tokens, REPLY_TOKENS)
        self.assertEqual(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens)
        self.assertIsNone(r.incomplete_details)
        # The decision record sits beside the response's own metadata, which stays the caller's.
        self.assertEqual(r.abroute_metadata["served_model_id"], "openai/" + r.model)
        echoed = oai.responses.create(model=MODEL, input="Hello!", metadata={"ticket": "t-1"})
        self.assertEqual(echoed.metadata, {"ticket": "t-1"})

    def test_streamed(self):
        events = list(oai.responses.create(model=MODEL, input="Hello!", stream=True))
        types = [e.type for e in events]
        self.assertEqual(types[0], "response.created")
        self.assertEqual(types[-1], "response.completed")
        for kind in ("response.output_item.added", "response.content_part.added",
                     "response.output_text.done", "response.output_item.done"):
            self.assertIn(kind, types)
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        done = events[-1].response
        self.assertEqual(done.output_text, text)
        self.assertTrue(served(text, done.model), text)
        self.assertEqual(done.usage.output_tokens, REPLY_TOKENS)
        # The gateway's metadata event, just before the terminal one: the raw iterator hands it
        # on as an event of a type the SDK does not know (no error).
        self.assertEqual(types[-2], "abroute.metadata")
        numbers = [e.sequence_number for e in events if e.type != "abroute.metadata"]
        self.assertEqual(numbers, list(range(len(numbers))))

    def test_stream_helper(self):
        with oai.responses.stream(model=MODEL, input="Hello!") as stream:
            text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
            final = stream.get_final_response()
        self.assertEqual(final.output_text, text)
        self.assertTrue(served(text, final.model), text)
        self.assertEqual(final.usage.output_tokens, REPLY_TOKENS)

    def test_max_output_tokens_makes_it_incomplete(self):
        r = oai.responses.create(model=MODEL, input="Hello!", max_output_tokens=3)
        self.assertEqual(r.status, "incomplete")
        self.assertEqual(r.incomplete_details.reason, "max_output_tokens")
        self.assertEqual(r.output_text, "Hello! This is")
        self.assertEqual(r.usage.output_tokens, 3)
        events = list(oai.responses.create(model=MODEL, input="Hello!", max_output_tokens=2, stream=True))
        self.assertEqual(events[-1].type, "response.incomplete")
        self.assertEqual(events[-1].response.incomplete_details.reason, "max_output_tokens")


class Messages(unittest.TestCase):
    """Anthropic's messages API."""

    def test_plain(self):
        m = ant.messages.create(model=MODEL, max_tokens=256, messages=HELLO)
        self.assertEqual(m.type, "message")
        self.assertEqual(m.role, "assistant")
        self.assertIn(m.model, SEED_MODELS)
        self.assertEqual(m.content[0].type, "text")
        self.assertTrue(served(m.content[0].text, m.model), m.content[0].text)
        self.assertEqual(m.stop_reason, "end_turn")
        self.assertEqual(m.usage.output_tokens, REPLY_TOKENS)
        self.assertGreater(m.usage.input_tokens, 0)
        self.assertEqual(m.metadata["served_model_id"], "openai/" + m.model)

    def test_streamed(self):
        with ant.messages.stream(model=MODEL, max_tokens=256, messages=HELLO) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        self.assertTrue(served(text, final.model), text)
        self.assertEqual(final.content[0].text, text)
        self.assertEqual(final.stop_reason, "end_turn")
        self.assertEqual(final.usage.output_tokens, REPLY_TOKENS)
        self.assertGreater(final.usage.input_tokens, 0)

    def test_stream_helper_passes_the_metadata_event_on(self):
        # The helper's text and final message skip it; its event iterator hands it on as an
        # event of a type the SDK does not know, without an error, just before message_stop.
        with ant.messages.stream(model=MODEL, max_tokens=256, messages=HELLO) as stream:
            events = list(stream)
            final = stream.get_final_message()
        types = [e.type for e in events]
        self.assertEqual(types[0], "message_start")
        self.assertEqual(types[-2:], ["abroute.metadata", "message_stop"])
        self.assertEqual(events[-2].metadata["served_model_id"], "openai/" + final.model)
        self.assertEqual(events[-1].message.content[0].text, final.content[0].text)

    def test_raw_stream(self):
        events = list(ant.messages.create(model=MODEL, max_tokens=256, messages=HELLO, stream=True))
        types = [e.type for e in events]
        self.assertEqual(types[0], "message_start")
        self.assertEqual(types[1], "content_block_start")
        self.assertEqual(types[-3:], ["message_delta", "abroute.metadata", "message_stop"])
        delta = events[-3]
        self.assertEqual(delta.delta.stop_reason, "end_turn")
        self.assertEqual(delta.usage.output_tokens, REPLY_TOKENS)
        # The raw iterator hands the gateway's event on, with the metadata in it.
        self.assertEqual(events[-2].metadata["router"], ROUTER)

    def test_max_tokens_stops_at_max_tokens(self):
        m = ant.messages.create(model=MODEL, max_tokens=3, messages=HELLO)
        self.assertEqual(m.stop_reason, "max_tokens")
        self.assertEqual(m.content[0].text, "Hello! This is")
        self.assertEqual(m.usage.output_tokens, 3)
        with ant.messages.stream(model=MODEL, max_tokens=2, messages=HELLO) as stream:
            final = stream.get_final_message()
        self.assertEqual(final.stop_reason, "max_tokens")
        self.assertEqual(final.usage.output_tokens, 2)


class Gateway(unittest.TestCase):
    """Routing as the SDKs see it."""

    def test_models_list(self):
        ids = [m.id for m in oai.models.list()]
        self.assertIn(MODEL, ids)

    def test_unknown_router_is_not_found(self):
        with self.assertRaises(openai.NotFoundError):
            oai.chat.completions.create(model="inworld/no-such-router", messages=HELLO)
        with self.assertRaises(openai.NotFoundError):
            oai.responses.create(model="inworld/no-such-router", input="Hello!")
        with self.assertRaises(anthropic.NotFoundError):
            ant.messages.create(model="inworld/no-such-router", max_tokens=16, messages=HELLO)

    def test_decision_headers_through_raw_responses(self):
        raw = oai.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO)
        self.check_headers(decision(raw.headers), raw.parse().model)
        raw = oai.responses.with_raw_response.create(model=MODEL, input="Hello!")
        self.check_headers(decision(raw.headers), raw.parse().model)
        raw = ant.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=HELLO)
        self.check_headers(decision(raw.headers), raw.parse().model)
        with oai.chat.completions.with_streaming_response.create(
            model=MODEL, messages=HELLO, stream=True
        ) as raw:
            headers = decision(raw.headers)
            model = [ch.model for ch in raw.parse()][0]
        self.check_headers(headers, model)

    def check_headers(self, headers, model):
        self.assertEqual(headers["x-abroute-router"], ROUTER)
        self.assertEqual(headers["x-abroute-route"], "default")
        self.assertIn(headers["x-abroute-variant"], SEED_VARIANTS)
        self.assertEqual(headers["x-abroute-assigned-variant"], headers["x-abroute-variant"])
        self.assertEqual(headers["x-abroute-model"], "openai/" + model)
        self.assertTrue(headers["x-abroute-version"].isdigit(), headers)

    def test_sticky_users_keep_their_variant(self):
        seen = set()
        for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
            variants = set()
            for _ in range(3):
                raw = oai.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO, user=user)
                variants.add(raw.headers["x-abroute-variant"])
                self.assertEqual(raw.parse().metadata["assignment"]["kind"], "sticky")
                raw = oai.responses.with_raw_response.create(model=MODEL, input="Hello!", user=user)
                variants.add(raw.headers["x-abroute-variant"])
                raw = ant.messages.with_raw_response.create(
                    model=MODEL, max_tokens=64, messages=HELLO, metadata={"user_id": user}
                )
                variants.add(raw.headers["x-abroute-variant"])
            self.assertEqual(len(variants), 1, f"{user} moved between {variants}")
            seen |= variants
        self.assertLessEqual(seen, SEED_VARIANTS)

    @unittest.skipUnless(FAILING, "ABROUTE_SDK_FAILING_MODEL is not set")
    def test_failover_shows_in_the_metadata(self):
        # Four requests to the failing model: passive health ejects a model after five failures
        # in a row, and an ejected model would no longer show as a failed attempt.
        router = "sdk-failover"
        create_router({
            "name": router,
            "defaultRoute": {"route_id": "default", "variants": [{
                "variant": {"variant_id": "main", "model_id": FAILING,
                            "model_selection": {"models": [BACKUP]}},
                "weight": 100,
            }]},
        })
        model = "inworld/" + router
        raw = oai.chat.completions.with_raw_response.create(model=model, messages=HELLO)
        c = raw.parse()
        self.check_failover(c.metadata, raw.headers)
        self.assertTrue(served(c.choices[0].message.content, BACKUP.split("/", 1)[1]))
        raw = oai.responses.with_raw_response.create(model=model, input="Hello!")
        self.check_failover(raw.parse().abroute_metadata, raw.headers)
        raw = ant.messages.with_raw_response.create(model=model, max_tokens=64, messages=HELLO)
        self.check_failover(raw.parse().metadata, raw.headers)
        chunks = list(oai.chat.completions.create(model=model, messages=HELLO, stream=True))
        self.check_failover(chunks[-1].metadata, None)

    def check_failover(self, meta, headers):
        attempts = meta["attempts"]
        self.assertEqual([a["model"] for a in attempts], [FAILING, BACKUP], meta)
        self.assertEqual([a["success"] for a in attempts], [False, True], meta)
        self.assertEqual(meta["served_model_id"], BACKUP)
        self.assertEqual(meta["assigned_model_id"], FAILING)
        if headers is not None:
            self.assertEqual(headers["x-abroute-model"], BACKUP)


def create_router(config):
    """Step 1 of the seed page, with the standard library (auth is off). Creating the same
    router again answers 200 too."""
    request = urllib.request.Request(
        BASE + "/router/v1/routers",
        data=json.dumps(config).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.status != 200:
            raise AssertionError(f"creating {config['name']}: {response.status}")


if __name__ == "__main__":
    print(f"openai {openai.__version__}, anthropic {anthropic.__version__}, gateway {BASE}")
    unittest.main(verbosity=2)
