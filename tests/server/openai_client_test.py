#!/usr/bin/env python3
"""kestrel-server against the official `openai` Python client (and raw HTTP where the client
would hide the status): both endpoints streamed and not, 32 concurrent greedy requests equal
to the same requests one by one, logprobs in OpenAI's shapes, clients that disconnect (streaming
or not), and every bad input
answered by an OpenAI error object with the right status while the server keeps serving.

usage: openai_client_test.py --venv DIR --server BIN --model PATH
Re-runs itself under DIR/bin/python (made by make_openai_venv.py); prints KESTREL-SKIP
when that environment or the model is missing. Each server runs on a free loopback port
and is killed at the end, whatever happens.
"""
import argparse
import concurrent.futures
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

ARGS = None
SERVERS = []  # (process, base_url)


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--venv", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--model", required=True)
    return parser.parse_known_args()


def start_server(*extra):
    """Starts kestrel-server on a free port; returns its base URL once it listens."""
    proc = subprocess.Popen([ARGS.server, "--model", ARGS.model, "--host", "127.0.0.1", "--port", "0",
                             "--threads", "1", "--max-sequence-tokens", "512", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    SERVERS.append(proc)
    line = proc.stdout.readline()
    match = re.search(r"listening on (http://[\d.]+:\d+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"kestrel-server did not start: {line}{proc.stdout.read()}")
    return match.group(1)


def stop_servers():
    for proc in SERVERS:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def raw(base, path, body=None, method=None):
    """(status, headers, parsed JSON or text) of one HTTP request, errors included."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, headers, text = response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as e:
        status, headers, text = e.code, e.headers, e.read().decode()
    try:
        return status, headers, json.loads(text)
    except json.JSONDecodeError:
        return status, headers, text


def metrics(base):
    _, _, text = raw(base, "/metrics")
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


PROMPTS = ["Once upon a time", "The capital of France is", "def fibonacci(n):", "1, 2, 3, 4,",
           "The quick brown fox", "In a galaxy far away", "My favourite food is", "Water boils at"]


class OpenAIClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import openai
        cls.openai = openai
        cls.base = start_server("--max-sequences", "16", "--max-body-bytes", "65536")
        cls.client = openai.OpenAI(base_url=cls.base + "/v1", api_key="unused", max_retries=0, timeout=120)
        cls.model = cls.client.models.list().data[0].id

    def complete(self, prompt, **kw):
        return self.client.completions.create(model=self.model, prompt=prompt, temperature=0, **kw)

    def test_models_and_health(self):
        self.assertEqual(self.model, Path(ARGS.model).stem)
        self.assertEqual(raw(self.base, "/health")[0], 200)

    def test_completions_streamed_equals_whole(self):
        whole = self.complete("Once upon a time", max_tokens=12)
        self.assertEqual(whole.choices[0].finish_reason, "length")
        self.assertEqual(whole.usage.completion_tokens, 12)
        self.assertEqual(whole.usage.prompt_tokens, 4)
        self.assertTrue(whole.choices[0].text)
        chunks = list(self.complete("Once upon a time", max_tokens=12, stream=True))
        self.assertEqual("".join(c.choices[0].text for c in chunks), whole.choices[0].text)
        self.assertEqual(chunks[-1].choices[0].finish_reason, "length")

    def test_chat_streamed_equals_whole(self):
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        whole = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0,
                                                    max_tokens=24)
        answer = whole.choices[0].message.content
        self.assertTrue(answer)
        self.assertEqual(whole.usage.prompt_tokens, 37)  # SmolLM2's template adds its system prompt
        self.assertIn(whole.choices[0].finish_reason, ("stop", "length"))
        stream = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0,
                                                     max_tokens=24, stream=True,
                                                     stream_options={"include_usage": True})
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, answer)
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        self.assertEqual(chunks[-1].usage.completion_tokens, whole.usage.completion_tokens)
        self.assertEqual(chunks[-2].choices[0].finish_reason, whole.choices[0].finish_reason)

    def test_tools_and_chat_template_kwargs_reach_the_template(self):
        messages = [{"role": "user", "content": "Weather in Paris?"},
                    {"role": "assistant", "content": "Let me check.",
                     "tool_calls": [{"id": "c1", "type": "function",
                                     "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                    {"role": "tool", "content": "21 C", "tool_call_id": "c1"}]
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
        plain = self.client.chat.completions.create(model=self.model, messages=messages, max_tokens=1)
        extra = self.client.chat.completions.create(model=self.model, messages=messages, max_tokens=1, tools=tools,
                                                    extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        # SmolLM2's ChatML template renders neither tools nor kwargs: the same prompt.
        self.assertEqual(extra.usage.prompt_tokens, plain.usage.prompt_tokens)
        # A template error (ChatML adds a null content to a string) is a 400 naming it.
        no_content = [messages[0], {**messages[1], "content": None}]
        got, _, error = raw(self.base, "/v1/chat/completions", {"messages": no_content}, method="POST")
        self.assertEqual((got, error["error"]["param"]), (400, "messages"), error)
        self.assertIn("NoneType", error["error"]["message"])
        deep = json.loads("[" * 200 + "]" * 200)
        for body, param in (({"chat_template_kwargs": 5}, "chat_template_kwargs"), ({"tools": "x"}, "tools"),
                            ({"tools": [deep]}, "tools[0]"), ({"chat_template_kwargs": {"x": deep}}, "chat_template_kwargs")):
            got, _, error = raw(self.base, "/v1/chat/completions", {"messages": messages[:1], **body}, method="POST")
            self.assertEqual((got, error["error"]["param"]), (400, param), error)

    def test_sampling_options_stop_and_n(self):
        out = self.client.completions.create(model=self.model, prompt="1, 2, 3, 4,", max_tokens=20,
                                             temperature=0.8, top_p=0.9, seed=7,
                                             presence_penalty=0.5, frequency_penalty=0.5, n=3,
                                             extra_body={"top_k": 20, "min_p": 0.05})
        self.assertEqual(len(out.choices), 3)
        again = self.client.completions.create(model=self.model, prompt="1, 2, 3, 4,", max_tokens=20,
                                               temperature=0.8, top_p=0.9, seed=7, presence_penalty=0.5,
                                               frequency_penalty=0.5, n=3, extra_body={"top_k": 20, "min_p": 0.05})
        self.assertEqual([c.text for c in out.choices], [c.text for c in again.choices])  # same seed
        stopped = self.complete("1, 2, 3, 4,", max_tokens=20, stop=[" 7"])
        self.assertEqual(stopped.choices[0].finish_reason, "stop")
        self.assertNotIn(" 7", stopped.choices[0].text)
        self.assertIn("6", stopped.choices[0].text)

    def test_response_format_and_grammar(self):
        messages = [{"role": "user", "content": "Give me a person with a name and an age, as JSON."}]
        schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                  "required": ["name", "age"], "additionalProperties": False}
        for seed, temperature in ((0, 0.0), (1, 0.9), (2, 0.9)):
            out = self.client.chat.completions.create(
                model=self.model, messages=messages, temperature=temperature, seed=seed, max_tokens=60,
                response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
            value = json.loads(out.choices[0].message.content)
            self.assertEqual(sorted(value), ["age", "name"])
            self.assertIsInstance(value["age"], int)
        out = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0,
                                                  max_tokens=60, response_format={"type": "json_object"})
        self.assertIsInstance(json.loads(out.choices[0].message.content), dict)
        # llama.cpp's "grammar" extension: GBNF text.
        out = self.complete("The answer is", max_tokens=8, extra_body={"grammar": 'root ::= ("yes" | "no") "."'})
        self.assertIn(out.choices[0].text, ("yes.", "no."))
        self.assertEqual(out.choices[0].finish_reason, "stop")
        for body, param in (({"prompt": "hi", "grammar": "root ::= ("}, None),
                            ({"prompt": "hi", "response_format": {"type": "xml"}}, "response_format.type"),
                            ({"prompt": "hi", "grammar": "root ::= \"a\"", "response_format": {"type": "text"}},
                             "grammar")):
            got, _, error = raw(self.base, "/v1/completions", body, method="POST")
            self.assertEqual(got, 400, error)
            if param:
                self.assertEqual(error["error"]["param"], param)

    def test_beam_search_and_speculative(self):
        prompt = "1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2,"
        plain = self.complete(prompt, max_tokens=16)
        fast = self.complete(prompt, max_tokens=16,
                             extra_body={"speculative": {"method": "prompt-lookup", "num_draft_tokens": 4}})
        self.assertEqual(fast.choices[0].text, plain.choices[0].text)  # greedy: identical tokens
        beams = self.complete("The capital of France is", max_tokens=8, n=2,
                              extra_body={"use_beam_search": True, "best_of": 3})
        self.assertEqual(len(beams.choices), 2)
        self.assertNotEqual(beams.choices[0].text, beams.choices[1].text)
        for body, param in (({"prompt": "hi", "use_beam_search": True, "temperature": 0.7}, "use_beam_search"),
                            ({"prompt": "hi", "speculative": {"method": "magic"}}, "speculative.method"),
                            ({"prompt": "hi", "temperature": 0, "n": 2}, "n")):
            got, _, error = raw(self.base, "/v1/completions", body, method="POST")
            self.assertEqual((got, error["error"]["param"]), (400, param), error)

    def test_concurrent_greedy_equals_one_by_one(self):
        requests = [(PROMPTS[i % len(PROMPTS)] + " " * (i // len(PROMPTS)), 6 + i % 7) for i in range(32)]
        alone = [self.complete(p, max_tokens=m).choices[0].text for p, m in requests]
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            together = list(pool.map(lambda r: self.complete(r[0], max_tokens=r[1]).choices[0].text, requests))
        self.assertEqual(together, alone)

    def test_prefix_cache_hits_in_metrics_with_identical_outputs(self):
        history = [{"role": "system", "content": "You answer in one short sentence. " * 6},
                   {"role": "user", "content": "Name a colour of the rainbow."}]
        ask = lambda: self.client.chat.completions.create(model=self.model, messages=history, temperature=0,
                                                          max_tokens=16)
        before = metrics(self.base)
        first = ask()
        middle = metrics(self.base)
        second = ask()
        after = metrics(self.base)
        self.assertEqual(second.choices[0].message.content, first.choices[0].message.content)
        prompt = first.usage.prompt_tokens
        self.assertEqual(middle["kestrel_prefix_cache_query_tokens_total"]
                         - before["kestrel_prefix_cache_query_tokens_total"], prompt)
        # The second time every whole 16-token block of the prompt but the last token's is reused.
        self.assertEqual(after["kestrel_prefix_cache_hit_tokens_total"]
                         - middle["kestrel_prefix_cache_hit_tokens_total"], (prompt - 1) // 16 * 16)
        self.assertGreater(after["kestrel_prefix_cache_hit_rate"], 0)
        self.assertGreater(after["kestrel_kv_blocks_cached"], 0)
        # A next turn reuses the whole conversation so far.
        history += [{"role": "assistant", "content": first.choices[0].message.content},
                    {"role": "user", "content": "And another one?"}]
        ask()
        final = metrics(self.base)
        self.assertGreaterEqual(final["kestrel_prefix_cache_hit_tokens_total"]
                                - after["kestrel_prefix_cache_hit_tokens_total"], prompt // 16 * 16)

    def test_disconnect_cancels_and_frees_blocks(self):
        before = metrics(self.base)
        stream = self.client.completions.create(model=self.model, prompt="Once upon a time", max_tokens=400,
                                                temperature=0, stream=True, extra_body={"ignore_eos": True})
        for i, _ in enumerate(stream):
            if i == 2:
                break
        stream.close()  # the client goes away mid-answer
        deadline = time.time() + 10
        while time.time() < deadline:
            now = metrics(self.base)
            if now["kestrel_requests_finished_total"] > before["kestrel_requests_finished_total"] and \
                    now["kestrel_kv_blocks_used"] == 0 and now["kestrel_running_sequences"] == 0:
                break
            time.sleep(0.05)
        self.assertEqual(now["kestrel_kv_blocks_used"], 0)
        self.assertEqual(now["kestrel_running_sequences"], 0)
        self.assertLess(now["kestrel_generation_tokens_total"] - before["kestrel_generation_tokens_total"], 400)

    def check_completion_logprobs(self, choice, n):
        lp = choice.logprobs
        self.assertEqual(len(lp.tokens), len(lp.token_logprobs))
        self.assertEqual(len(lp.tokens), len(lp.top_logprobs))
        self.assertEqual("".join(lp.tokens), choice.text)  # ASCII prompts: no split characters
        self.assertEqual(lp.text_offset, [len("".join(lp.tokens[:i])) for i in range(len(lp.tokens))])
        for chosen, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
            self.assertLessEqual(logprob, 0.0)
            self.assertIn(len(top), (n, n + 1))  # n most likely, plus the chosen one when not among them
            self.assertAlmostEqual(top[chosen], logprob, places=6)
            self.assertLessEqual(sum(math.exp(v) for v in top.values()), 1.0 + 1e-5)

    def test_completion_logprobs_greedy_streamed_and_stopped(self):
        whole = self.complete("The capital of France is", max_tokens=10, logprobs=5,
                              extra_body={"ignore_eos": True})
        choice = whole.choices[0]
        self.assertEqual(len(choice.logprobs.tokens), 10)
        self.check_completion_logprobs(choice, 5)
        for logprob, top in zip(choice.logprobs.token_logprobs, choice.logprobs.top_logprobs):
            self.assertEqual(len(top), 5)  # greedy: the chosen token is among the top 5,
            self.assertEqual(logprob, max(top.values()))  # and the most likely
        # Streamed: the same tokens and values, chunk by chunk with their text.
        chunks = list(self.complete("The capital of France is", max_tokens=10, logprobs=5, stream=True,
                                    extra_body={"ignore_eos": True}))
        tokens, values, offsets = [], [], []
        for c in chunks:
            if c.choices[0].logprobs:
                lp = c.choices[0].logprobs
                self.assertEqual("".join(lp.tokens), c.choices[0].text)
                tokens += lp.tokens
                values += lp.token_logprobs
                offsets += lp.text_offset
        self.assertEqual(tokens, choice.logprobs.tokens)
        self.assertEqual(values, choice.logprobs.token_logprobs)
        self.assertEqual(offsets, choice.logprobs.text_offset)
        # The distribution is the model's: a teacher-forced request (the prompt plus the first
        # k generated tokens, as ids) gives the k-th token the same log-probability.
        # (Teacher forcing through text: when the prompt plus those tokens tokenizes back to the
        # same ids, which the token counts show.)
        forced = "The capital of France is" + "".join(choice.logprobs.tokens[:3])
        nxt = self.complete(forced, max_tokens=1, logprobs=5)
        if nxt.usage.prompt_tokens == whole.usage.prompt_tokens + 3:
            self.assertEqual(nxt.choices[0].logprobs.tokens[0], choice.logprobs.tokens[3])
            self.assertAlmostEqual(nxt.choices[0].logprobs.token_logprobs[0], choice.logprobs.token_logprobs[3],
                                   places=4)
        # A stop string: tokens cut away entirely are not reported; the rest spell the text.
        stop = choice.logprobs.tokens[4]
        cut = self.complete("The capital of France is", max_tokens=10, logprobs=2, stop=[stop],
                            extra_body={"ignore_eos": True}).choices[0]
        self.assertEqual(cut.finish_reason, "stop")
        self.assertEqual(cut.text, "".join(choice.logprobs.tokens[:4]))
        self.assertEqual(cut.logprobs.tokens, choice.logprobs.tokens[:4])
        self.check_completion_logprobs(cut, 2)
        # logprobs 0: the chosen token's only; sampled requests report them too.
        zero = self.complete("Once upon a time", max_tokens=4, logprobs=0).choices[0]
        self.assertTrue(all(len(top) == 1 for top in zero.logprobs.top_logprobs))
        sampled = self.client.completions.create(model=self.model, prompt="Once upon a time", max_tokens=8,
                                                 temperature=1.5, seed=3, n=2, logprobs=3,
                                                 extra_body={"ignore_eos": True})
        for c in sampled.choices:
            self.check_completion_logprobs(c, 3)
        off = self.complete("Once upon a time", max_tokens=2)
        self.assertIsNone(off.choices[0].logprobs)

    def test_chat_logprobs(self):
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        whole = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0,
                                                    max_tokens=12, logprobs=True, top_logprobs=4)
        content = whole.choices[0].logprobs.content
        self.assertEqual("".join(t.token for t in content), whole.choices[0].message.content)
        for t in content:
            self.assertEqual(bytes(t.bytes).decode("utf-8", "replace"), t.token)
            self.assertEqual(len(t.top_logprobs), 4)
            self.assertEqual(t.logprob, max(a.logprob for a in t.top_logprobs))  # greedy
            self.assertEqual([a.logprob for a in t.top_logprobs],
                             sorted((a.logprob for a in t.top_logprobs), reverse=True))
        stream = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0,
                                                     max_tokens=12, logprobs=True, top_logprobs=4, stream=True)
        streamed = [t for c in stream if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
        self.assertEqual([(t.token, t.logprob) for t in streamed], [(t.token, t.logprob) for t in content])
        plain = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0, max_tokens=2,
                                                    logprobs=True)
        self.assertTrue(all(t.top_logprobs == [] for t in plain.choices[0].logprobs.content))

    def test_disconnect_of_a_whole_request_cancels_it(self):
        """A client of a non-streaming request that goes away: noticed while it waits (the
        server peeks at the socket every 50 ms), the request is cancelled, slot and blocks freed."""
        before = metrics(self.base)
        host, port = self.base[len("http://"):].split(":")
        body = json.dumps({"prompt": "Once upon a time", "max_tokens": 400, "temperature": 0, "ignore_eos": True})
        sock = socket.create_connection((host, int(port)))
        sock.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
        deadline = time.time() + 30
        while time.time() < deadline:  # until it is generating
            now = metrics(self.base)
            if now["kestrel_generation_tokens_total"] - before["kestrel_generation_tokens_total"] >= 3:
                break
            time.sleep(0.02)
        at_close = metrics(self.base)["kestrel_generation_tokens_total"]
        sock.close()
        deadline = time.time() + 10
        while time.time() < deadline:
            now = metrics(self.base)
            if now["kestrel_requests_finished_total"] > before["kestrel_requests_finished_total"] and \
                    now["kestrel_kv_blocks_used"] == 0 and now["kestrel_running_sequences"] == 0:
                break
            time.sleep(0.02)
        self.assertGreater(now["kestrel_requests_finished_total"], before["kestrel_requests_finished_total"])
        self.assertEqual(now["kestrel_kv_blocks_used"], 0)
        self.assertEqual(now["kestrel_running_sequences"], 0)
        # Cancelled within a few steps of the close, far from its 400 tokens.
        self.assertLess(now["kestrel_generation_tokens_total"] - at_close, 40)

    def test_bad_inputs(self):
        openai = self.openai
        cases = [
            ("malformed JSON", b'{"prompt": ', 400, None),
            ("not an object", b'[1, 2]', 400, None),
            ("wrong type", {"prompt": "hi", "max_tokens": "ten"}, 400, "max_tokens"),
            ("wrong type", {"prompt": "hi", "temperature": "hot"}, 400, "temperature"),
            ("wrong type", {"prompt": 12}, 400, "prompt"),
            ("out of range", {"prompt": "hi", "top_p": 1.5}, 400, "top_p"),
            ("unknown model", {"prompt": "hi", "model": "gpt-4"}, 400, "model"),
            ("prompt over the context", {"prompt": "hello " * 600}, 400, "prompt"),
            ("max_tokens over the limit", {"prompt": "hi", "max_tokens": 100000}, 400, "max_tokens"),
            ("logprobs over 5", {"prompt": "hi", "logprobs": 6}, 400, "logprobs"),
            ("logprobs negative", {"prompt": "hi", "logprobs": -1}, 400, "logprobs"),
            ("logprobs not an integer", {"prompt": "hi", "logprobs": True}, 400, "logprobs"),
            ("top_logprobs on completions", {"prompt": "hi", "top_logprobs": 2}, 400, "top_logprobs"),
            ("body over the limit", json.dumps({"prompt": "x" * 70000}).encode(), 413, None),
        ]
        for name, body, status, param in cases:
            with self.subTest(name):
                got, _, error = raw(self.base, "/v1/completions", body, method="POST")
                self.assertEqual(got, status, error)
                self.assertIsInstance(error.get("error", {}).get("message"), str, error)
                if param:
                    self.assertEqual(error["error"]["param"], param)
        got, _, error = raw(self.base, "/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]},
                            method="POST")
        self.assertEqual((got, error["error"]["param"]), (400, "messages[0].role"))
        chat_cases = [({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
                      ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
                      ({"top_logprobs": 3}, "top_logprobs"),
                      ({"logprobs": 1}, "logprobs")]
        for extra, param in chat_cases:
            with self.subTest(extra=extra):
                got, _, error = raw(self.base, "/v1/chat/completions",
                                    {"messages": [{"role": "user", "content": "hi"}], **extra}, method="POST")
                self.assertEqual((got, error["error"]["param"]), (400, param), error)
        with self.assertRaises(openai.BadRequestError) as raised:
            self.client.completions.create(model="no-such-model", prompt="hi")
        self.assertEqual(raised.exception.code, "model_not_found")
        with self.assertRaises(openai.BadRequestError):
            self.client.chat.completions.create(model=self.model, messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=10**6)
        # Still serving.
        self.assertEqual(self.complete("Hello", max_tokens=2).usage.completion_tokens, 2)


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 12},
        "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}},
                                       "required": ["zone"]}}}


def check_weather_arguments(test, arguments):
    """The arguments' JSON text holds what get_weather's schema asks for, and nothing else."""
    value = json.loads(arguments)
    test.assertEqual(sorted(value), ["city", "unit"], arguments)
    test.assertIsInstance(value["city"], str)
    test.assertTrue(1 <= len(value["city"]) <= 12, arguments)
    test.assertIn(value["unit"], ("celsius", "fahrenheit"))


def assemble_stream(test, chunks):
    """(content, reasoning, calls, finish_reason) of a streamed chat completion, checking
    the OpenAI delta shape: a call's first delta has index, id, type and function.name,
    later ones only index and function.arguments."""
    content, reasoning, calls, finish = "", "", [], None
    for chunk in chunks:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        reasoning += getattr(delta, "reasoning_content", None) or (delta.model_extra or {}).get("reasoning_content") or ""
        for call in delta.tool_calls or []:
            if call.index == len(calls):
                test.assertTrue(call.id.startswith("call_"), call)
                test.assertEqual(call.type, "function")
                test.assertTrue(call.function.name)
                calls.append({"id": call.id, "name": call.function.name, "arguments": call.function.arguments or ""})
            else:
                test.assertIsNone(call.id)
                test.assertIsNone(call.function.name)
                calls[call.index]["arguments"] += call.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    return content, reasoning, calls, finish


class ToolCallTest(unittest.TestCase):
    """Tool calls and reasoning parsed out of replies. A tiny model does not call tools on
    its own, so its replies are made deterministic by grammars: tool_choice "required" (the
    server's own grammar from the tools' schemas, whose output must parse as a valid call)
    and llama.cpp's "grammar" extension (a fixed call or thought that must come back parsed)."""

    @classmethod
    def setUpClass(cls):
        import openai
        cls.base = start_server("--tool-call-format", "hermes", "--reasoning-format", "think")
        cls.client = openai.OpenAI(base_url=cls.base + "/v1", api_key="unused", max_retries=0, timeout=120)
        cls.model = cls.client.models.list().data[0].id
        cls.messages = [{"role": "user", "content": "What is the weather in Paris?"}]

    def chat(self, **kw):
        return self.client.chat.completions.create(model=self.model, messages=self.messages, **kw)

    def test_required_named_function_whole_and_streamed(self):
        kw = dict(tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_weather"}},
                  parallel_tool_calls=False, temperature=0, max_tokens=120)
        whole = self.chat(**kw)
        choice = whole.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        self.assertIsNone(choice.message.content)
        self.assertEqual(len(choice.message.tool_calls), 1)
        call = choice.message.tool_calls[0]
        self.assertEqual((call.type, call.function.name), ("function", "get_weather"))
        self.assertRegex(call.id, r"^call_[A-Za-z0-9]{24}$")
        check_weather_arguments(self, call.function.arguments)
        content, reasoning, calls, finish = assemble_stream(self, self.chat(stream=True, **kw))
        self.assertEqual((content, reasoning, finish), ("", "", "tool_calls"))
        self.assertEqual([(c["name"], c["arguments"]) for c in calls], [("get_weather", call.function.arguments)])

    def test_required_sampled_calls_name_a_tool_with_valid_arguments(self):
        for seed in (1, 2, 3):
            out = self.chat(tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=False,
                            temperature=1.0, seed=seed, max_tokens=120)
            calls = out.choices[0].message.tool_calls
            self.assertEqual(len(calls), 1, out)
            if calls[0].function.name == "get_weather":
                check_weather_arguments(self, calls[0].function.arguments)
            else:
                self.assertEqual(calls[0].function.name, "get_time")
                self.assertIn(json.loads(calls[0].function.arguments)["zone"], ("UTC", "CET"))

    def test_auto_parses_a_call_the_reply_makes(self):
        call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "'
        grammar = 'root ::= "Checking. ' + call.replace('"', '\\"').replace("\n", "\\n") + \
            '" [a-z]{1,8} "\\", \\"unit\\": \\"celsius\\"}}\\n</tool_call>"'
        kw = dict(tools=[WEATHER], temperature=0, max_tokens=200, extra_body={"grammar": grammar})
        whole = self.chat(**kw).choices[0]
        self.assertEqual(whole.finish_reason, "tool_calls")
        self.assertEqual(whole.message.content, "Checking.")
        self.assertEqual(whole.message.tool_calls[0].function.name, "get_weather")
        check_weather_arguments(self, whole.message.tool_calls[0].function.arguments)
        content, _, calls, finish = assemble_stream(self, self.chat(stream=True, **kw))
        self.assertEqual((content, finish), ("Checking.", "tool_calls"))
        self.assertEqual(calls[0]["arguments"], whole.message.tool_calls[0].function.arguments)
        # tool_choice "none": no parsing, the call's text is the content.
        plain = self.chat(tool_choice="none", **kw).choices[0]
        self.assertIsNone(plain.message.tool_calls)
        self.assertIn("<tool_call>", plain.message.content)
        self.assertEqual(plain.finish_reason, "stop")
        # Not a valid call (no arguments): it stays in the content.
        bad = self.chat(tools=[WEATHER], temperature=0, max_tokens=200,
                        extra_body={"grammar": 'root ::= "<tool_call>{\\"name\\": \\"get_weather\\"}</tool_call>"'})
        self.assertEqual(bad.choices[0].message.content, '<tool_call>{"name": "get_weather"}</tool_call>')
        self.assertIsNone(bad.choices[0].message.tool_calls)
        self.assertEqual(bad.choices[0].finish_reason, "stop")

    def test_reasoning_content_whole_and_streamed(self):
        kw = dict(temperature=0, max_tokens=60,
                  extra_body={"grammar": 'root ::= "<think>" [a-z] [a-z ]{0,11} "</think>\\n" [a-z]{1,10}'})
        whole = self.chat(**kw)
        message = whole.choices[0].message.model_dump()
        self.assertTrue(message["reasoning_content"])
        self.assertTrue(message["content"])
        self.assertNotIn("think>", message["content"] + message["reasoning_content"])
        content, reasoning, calls, _ = assemble_stream(self, self.chat(stream=True, **kw))
        self.assertEqual((content, reasoning, calls), (message["content"], message["reasoning_content"], []))

    def test_bad_tool_requests_name_the_field(self):
        bad_name = {"type": "function", "function": {"name": "get weather"}}
        pattern = {"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"s": {"type": "string", "pattern": "^a"}}}}}
        for body, param in (({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
                            ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
                             "tool_choice"),
                            ({"tool_choice": "required"}, "tool_choice"),
                            ({"tools": [bad_name]}, "tools[0].function.name"),
                            ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
                            ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
                            ({"tools": [WEATHER], "tool_choice": "required", "response_format": {"type": "json_object"}},
                             "tool_choice"),
                            ({"tools": [pattern], "tool_choice": "required"}, "tools")):
            got, _, error = raw(self.base, "/v1/chat/completions", {"messages": self.messages, **body}, method="POST")
            self.assertEqual((got, error["error"]["param"]), (400, param), (body, error))

    def test_formats_without_a_call_grammar_refuse_required(self):
        for extra, word in (((), "no tool-call format"), (("--tool-call-format", "mistral"), "mistral")):
            base = start_server(*extra)
            got, _, error = raw(base, "/v1/chat/completions",
                                {"messages": self.messages, "tools": [WEATHER], "tool_choice": "required"},
                                method="POST")
            self.assertEqual((got, error["error"]["param"]), (400, "tool_choice"), error)
            self.assertIn(word, error["error"]["message"])


class QueueFullTest(unittest.TestCase):
    def test_full_queue_answers_503_with_retry_after(self):
        base = start_server("--max-sequences", "1", "--max-queued", "1")
        body = {"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0, "ignore_eos": True}
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: raw(base, "/v1/completions", body, method="POST"), range(6)))
        statuses = sorted(r[0] for r in results)
        self.assertIn(503, statuses)
        self.assertIn(200, statuses)
        for status, headers, body in results:
            if status == 503:
                self.assertEqual(headers["Retry-After"], "1")
                self.assertEqual(body["error"]["type"], "overloaded_error")
            else:
                self.assertEqual(body["usage"]["completion_tokens"], 40)
        self.assertGreaterEqual(metrics(base)["kestrel_requests_refused_total"], 1)


def main():
    global ARGS
    ARGS, rest = parse_args()
    venv_python = Path(ARGS.venv) / "bin" / "python"
    if Path(sys.executable).resolve() != venv_python.resolve() and os.environ.get("KESTREL_IN_VENV") != "1":
        if not venv_python.exists():
            print(f"KESTREL-SKIP: no openai client environment at {ARGS.venv} (see make_openai_venv.py)")
            return 0
        os.environ["KESTREL_IN_VENV"] = "1"
        os.execv(str(venv_python), [str(venv_python), *sys.argv])
    try:
        import openai  # noqa: F401
    except ImportError:
        print(f"KESTREL-SKIP: the openai client is not installed in {ARGS.venv}")
        return 0
    if not Path(ARGS.model).exists():
        print(f"KESTREL-SKIP: model {ARGS.model} is missing (scripts/fetch-default-model.sh)")
        return 0
    try:
        program = unittest.main(argv=[sys.argv[0], "-v", *rest], exit=False)
    finally:
        stop_servers()
    return 0 if program.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
