"""ingotd's OpenAI-compatible HTTP API against the real `openai` client (pinned in
tests/http/requirements.txt) and curl, on a real ingotd serving the default model:
models, completions, chat, streaming with usage, logprobs, the sampling parameters,
response_format, and every error with its HTTP status and OpenAI error object."""
import json
import signal
import socket
import subprocess
import threading
import time

import jsonschema
import openai
import pytest

from ingotd_server import COUNTING_PROMPT, Ingotd, require_binaries, wait_for

ADMIN = "admin-token-0123456789"
READER = "reader-token-0123456789"
MAX_TOKENS_LIMIT = 1024


@pytest.fixture(scope="module")
def server():
    require_binaries()
    s = Ingotd(env={"INGOT_AUTH_TOKENS": f"{ADMIN} admin ops,{READER} read-only app",
                    "INGOT_LIMITS_MAX_TOKENS": str(MAX_TOKENS_LIMIT)})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key=READER, max_retries=0, timeout=120)


def chat(client, content, **kw):
    return client.chat.completions.create(model="default", messages=[{"role": "user", "content": content}], **kw)


def test_models_list_and_retrieve(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["default"]
    assert models.data[0].object == "model"
    one = client.models.retrieve("default")
    assert one.id == "default"
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("no-such-model")
    assert e.value.status_code == 404 and e.value.code == "model_not_found"


def test_completion_greedy_length_and_usage(client):
    r = client.completions.create(model="default", prompt=COUNTING_PROMPT, max_tokens=12, temperature=0)
    assert r.object == "text_completion"
    assert r.model == "default"
    assert len(r.choices) == 1
    c = r.choices[0]
    assert c.finish_reason == "length"
    # The greedy continuation of the counting prompt counts on.
    assert c.text.startswith(" 13, 14"), c.text
    assert r.usage.completion_tokens == 12
    assert r.usage.prompt_tokens > 10
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    again = client.completions.create(model="default", prompt=COUNTING_PROMPT, max_tokens=12, temperature=0)
    assert again.choices[0].text == c.text
    assert again.id != r.id


def test_completion_stop_and_logprobs(client):
    r = client.completions.create(model="default", prompt=COUNTING_PROMPT, max_tokens=30, temperature=0,
                                  stop=[" 16"], logprobs=3)
    c = r.choices[0]
    assert c.finish_reason == "stop"
    assert c.text == " 13, 14, 15,", c.text
    lp = c.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
    # The tokens up to the stop string (which the engine drops from the text, with its tokens reported).
    assert "".join(lp.tokens).startswith(c.text)
    for chosen, value, top, offset in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, lp.text_offset):
        assert value <= 0
        assert 1 <= len(top) <= 3
        # Greedy: the chosen token is the most likely one.
        assert max(top.values()) == pytest.approx(value, abs=1e-5)
        assert top[chosen] == pytest.approx(value, abs=1e-5)
    assert lp.text_offset[0] == 0
    assert all(b > a for a, b in zip(lp.text_offset, lp.text_offset[1:]))


def test_completion_echo_with_logprobs(client, server):
    plain = client.completions.create(model="default", prompt=COUNTING_PROMPT, max_tokens=4, temperature=0,
                                      logprobs=2)
    r = client.completions.create(model="default", prompt=COUNTING_PROMPT, max_tokens=4, temperature=0,
                                  logprobs=2, echo=True)
    c = r.choices[0]
    assert c.text == COUNTING_PROMPT + plain.choices[0].text
    lp, tail = c.logprobs, plain.choices[0].logprobs
    n_prompt = r.usage.prompt_tokens
    assert len(lp.tokens) == n_prompt + len(tail.tokens)
    assert "".join(lp.tokens[:n_prompt]) == COUNTING_PROMPT
    # The prompt's first token has no context: null; the others are <= 0 with 2 alternatives.
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    for value, top in zip(lp.token_logprobs[1:n_prompt], lp.top_logprobs[1:n_prompt]):
        assert value <= 0
        assert len(top) == 2
        assert value <= max(top.values()) + 1e-5
    # The generated part is the plain request's.
    assert lp.tokens[n_prompt:] == tail.tokens
    assert lp.token_logprobs[n_prompt:] == pytest.approx(tail.token_logprobs, abs=1e-4)
    assert lp.text_offset[0] == 0 and lp.text_offset[n_prompt] == len(COUNTING_PROMPT)

    # Streamed: the first event is the prompt with its logprobs, then the completion.
    events = list(client.completions.create(model="default", prompt=COUNTING_PROMPT, max_tokens=4,
                                            temperature=0, logprobs=2, echo=True, stream=True))
    assert events[0].choices[0].text == COUNTING_PROMPT
    assert len(events[0].choices[0].logprobs.tokens) == n_prompt
    assert events[0].choices[0].logprobs.token_logprobs[0] is None
    assert "".join(e.choices[0].text for e in events if e.choices) == c.text


def test_chat_completion(client):
    r = chat(client, "What is the capital of France? Answer in one word.", max_tokens=16, temperature=0)
    assert r.object == "chat.completion"
    m = r.choices[0].message
    assert m.role == "assistant"
    assert "Paris" in m.content, m.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens >= 1
    # The chat template wraps the message: more prompt tokens than the words.
    assert r.usage.prompt_tokens > 15


def test_chat_streaming_with_usage_matches_whole_answer(client):
    question = "Name three colors."
    whole = chat(client, question, max_tokens=24, temperature=0)
    stream = chat(client, question, max_tokens=24, temperature=0, stream=True,
                  stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert len({c.id for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_chat_logprobs(client):
    r = chat(client, "Say hello.", max_tokens=10, temperature=0, logprobs=True, top_logprobs=4)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    # The tokens' bytes make up the answer (it ends on whole characters).
    joined = b"".join(bytes(t.bytes) for t in content).decode("utf-8", "replace")
    assert joined.startswith(r.choices[0].message.content)
    for t in content:
        assert t.logprob <= 0
        assert len(t.top_logprobs) == 4
        values = [a.logprob for a in t.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert t.top_logprobs[0].token == t.token
        assert values[0] == pytest.approx(t.logprob, abs=1e-5)


def test_seed_n_and_penalties(client):
    kw = dict(max_tokens=12, temperature=1.0, seed=1234)
    a = chat(client, "Write a word.", **kw)
    b = chat(client, "Write a word.", **kw)
    assert a.choices[0].message.content == b.choices[0].message.content
    n = chat(client, "Write a word.", n=3, **kw)
    assert [c.index for c in n.choices] == [0, 1, 2]
    # Completion i samples with seed + i: the first is the single request's answer.
    assert n.choices[0].message.content == a.choices[0].message.content
    assert len({c.message.content for c in n.choices}) >= 2  # different seeds, different words
    assert n.usage.completion_tokens >= 3  # all three counted
    # A strong frequency penalty stops the greedy counting from repeating ", ".
    plain = client.completions.create(model="default", prompt=COUNTING_PROMPT, max_tokens=16, temperature=0)
    penalised = client.completions.create(model="default", prompt=COUNTING_PROMPT, max_tokens=16, temperature=0,
                                          frequency_penalty=2.0, presence_penalty=2.0)
    assert penalised.choices[0].text != plain.choices[0].text


def test_max_completion_tokens_and_top_p(client):
    prompt = "Write the numbers from 1 to 100, separated by commas."
    r = chat(client, prompt, max_completion_tokens=5, temperature=0.8, top_p=0.5, seed=7)
    assert r.usage.completion_tokens == 5, r.choices[0].message.content
    assert r.choices[0].finish_reason == "length"
    # max_completion_tokens wins over the older max_tokens.
    r = chat(client, prompt, max_completion_tokens=3, max_tokens=9, temperature=0)
    assert r.usage.completion_tokens == 3


def test_response_format_json_schema(client):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    for seed in range(3):
        r = chat(client, "Give a person as JSON.", max_tokens=256, temperature=1.0, seed=seed,
                 response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
        assert r.choices[0].finish_reason == "stop", r.choices[0]
        jsonschema.validate(json.loads(r.choices[0].message.content), schema)


def test_response_format_refusals(client):
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, "x", response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": "object"}})
    assert e.value.param == "response_format"
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, "x", response_format={"type": "yaml"})
    assert e.value.param == "response_format"
    # A keyword the schema compiler does not support is named, before any token.
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, "x", response_format={"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"oneOf": [{"type": "integer"}, {"type": "string"}]}}})
    assert e.value.param == "response_format"
    assert "oneOf" in e.value.message
    r = chat(client, 'Reply with exactly this JSON object: {"city": "Paris", "country": "France"}', max_tokens=256,
             temperature=0, response_format={"type": "json_object"})
    assert r.choices[0].finish_reason == "stop", r.choices[0]
    assert isinstance(json.loads(r.choices[0].message.content), dict)


@pytest.mark.parametrize("kw,param", [
    ({"temperature": -1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"n": 17}, "n"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"presence_penalty": 2.5}, "presence_penalty"),
    ({"frequency_penalty": -3}, "frequency_penalty"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"stop": [""]}, "stop"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
])
def test_bad_parameters_are_400_naming_them(client, kw, param):
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, "x", **kw)
    assert e.value.status_code == 400
    assert e.value.param == param
    assert e.value.type == "invalid_request_error"
    assert e.value.message


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found" and e.value.param == "model"
    assert "nope" in e.value.message


def test_tokens_and_roles(server):
    anonymous = openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        anonymous.models.list()
    assert e.value.status_code == 401 and e.value.type == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        anonymous.completions.create(model="default", prompt="x", max_tokens=1)
    # No header at all (curl): 401 with OpenAI's error object.
    out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", f"{server.base_url}/models"],
                         capture_output=True, text=True, check=True).stdout
    body, code = out.rsplit("\n", 1)
    assert code == "401"
    assert "missing bearer token" in json.loads(body)["error"]["message"]
    # A read-only token may not unload (as UnloadModel over gRPC): 403.
    reader = openai.OpenAI(base_url=server.base_url, api_key=READER, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as e:
        reader.models.delete("default")
    assert e.value.status_code == 403 and "read-only" in e.value.message
    assert [m.id for m in reader.models.list().data] == ["default"]


def test_limits_are_429(client):
    with pytest.raises(openai.RateLimitError) as e:
        chat(client, "x", max_tokens=MAX_TOKENS_LIMIT + 1)
    assert e.value.status_code == 429
    assert "limits.max_tokens" in e.value.message


def test_sse_framing_with_curl(server):
    body = json.dumps({"model": "default", "prompt": COUNTING_PROMPT, "max_tokens": 6, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}})
    out = subprocess.run(["curl", "-sN", "-i", "-H", f"Authorization: Bearer {READER}",
                          "-H", "Content-Type: application/json", "-d", body, f"{server.base_url}/completions"],
                         capture_output=True, check=True, timeout=120).stdout.decode()
    head, _, events = out.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200")
    assert "Content-Type: text/event-stream" in head
    # Every event is one `data:` line and a blank line; comments (": waiting") may
    # come between them while the model is slow.
    assert events.endswith("data: [DONE]\n\n")
    frames = [f for f in events.split("\n\n") if f and not f.startswith(":")]
    assert all(f.startswith("data: ") and "\n" not in f for f in frames), frames
    payloads = [json.loads(f[len("data: "):]) for f in frames[:-1]]
    assert frames[-1] == "data: [DONE]"
    assert all(p["object"] == "text_completion" for p in payloads)
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] == 6
    text = "".join(p["choices"][0]["text"] for p in payloads[:-1])
    whole = json.loads(subprocess.run(
        ["curl", "-s", "-H", f"Authorization: Bearer {READER}", "-d", body.replace('"stream": true', '"stream": false')
         .replace(', "stream_options": {"include_usage": true}', ""), f"{server.base_url}/completions"],
        capture_output=True, text=True, check=True).stdout)
    assert text == whole["choices"][0]["text"]


def test_raw_errors_with_curl(server):
    def post(path, data, token=READER):
        out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-H", f"Authorization: Bearer {token}",
                              "-d", data, f"{server.base_url}{path}"], capture_output=True, text=True,
                             check=True).stdout
        body, code = out.rsplit("\n", 1)
        return int(code), json.loads(body)["error"]

    errors = []
    for path, data, status, param in [
            ("/chat/completions", "{not json", 400, "body"),
            ("/completions", json.dumps({"model": "default", "prompt": ["a", "b"]}), 400, "prompt"),
            ("/completions", json.dumps({"model": "default"}), 400, "prompt"),
            ("/chat/completions", json.dumps({"model": "default", "messages": [{"role": "user", "content": "x"}],
                                              "echo": True}), 400, "echo"),
            ("/nothing", "{}", 404, None)]:
        code, err = post(path, data)
        assert (code, err["param"]) == (status, param), (path, data, err)
        errors.append(err)
    assert errors[-1]["code"] == "unknown_url"
    # OpenAI's error object, always the same four fields.
    assert all(set(e) == {"message", "type", "param", "code"} for e in errors)


def _open_stream(server, max_tokens):
    """Starts a streamed completion on a raw socket and returns it after the first event."""
    body = json.dumps({"model": "default", "prompt": COUNTING_PROMPT, "max_tokens": max_tokens,
                       "temperature": 0, "stream": True}).encode()
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=60)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Authorization: Bearer {READER}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    received = b""
    while b"data: {" not in received:
        chunk = sock.recv(4096)
        assert chunk, received
        received += chunk
    return sock


def test_client_disconnect_cancels_the_sequence(server):
    series = 'ingot_requests_total{code="CANCELLED",model="default"}'
    before = max(0.0, server.metric(series))
    sock = _open_stream(server, MAX_TOKENS_LIMIT)
    assert wait_for(lambda: server.metric('ingot_requests_running{model="default"}') == 1, timeout=10)
    sock.close()
    # Cancelled at the next token's write, long before 1024 tokens (~10 s at 100 tok/s).
    t0 = time.monotonic()
    assert wait_for(lambda: server.metric('ingot_requests_running{model="default"}') == 0, timeout=30)
    assert wait_for(lambda: server.metric(series) >= before + 1, timeout=10)
    assert time.monotonic() - t0 < 2.0, "the sequence ran on after its client left"
    assert "stream=true finish=cancelled" in server.read_log()


def test_client_disconnect_cancels_a_whole_answer(server):
    """A non-streamed answer that takes over a second is sent a space a second, so a
    client that leaves is noticed while the model is still writing."""
    series = 'ingot_requests_total{code="CANCELLED",model="default"}'
    before = max(0.0, server.metric(series))
    body = json.dumps({"model": "default", "prompt": COUNTING_PROMPT, "max_tokens": MAX_TOKENS_LIMIT,
                       "temperature": 0}).encode()
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=60)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                 + f"Authorization: Bearer {READER}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head  # committed after the first second
    sock.close()
    t0 = time.monotonic()
    assert wait_for(lambda: server.metric('ingot_requests_running{model="default"}') == 0, timeout=30)
    assert wait_for(lambda: server.metric(series) >= before + 1, timeout=10)
    assert time.monotonic() - t0 < 4.0, "the sequence ran on after its client left"


def test_metrics_count_http(server, client):
    client.models.list()
    metrics = server.metrics()
    assert 'ingot_http_requests_total{route="models",status="200"}' in metrics
    assert 'ingot_http_requests_total{route="chat_completions",status="400"}' in metrics
    assert server.metric('ingot_requests_total{code="OK",model="default"}') >= 5


def test_draining_answers_503_and_lets_streams_finish():
    require_binaries()
    s = Ingotd("--drain-seconds", "20")
    try:
        c = openai.OpenAI(base_url=s.base_url, api_key="unused", max_retries=0, timeout=120)
        events = []
        stream = c.completions.create(model="default", prompt=COUNTING_PROMPT, max_tokens=150, temperature=0,
                                      stream=True)
        first = next(iter(stream))
        events.append(first)
        reader = threading.Thread(target=lambda: events.extend(stream))
        reader.start()
        s.proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: "draining" in s.read_log(), timeout=10)
        with pytest.raises(openai.APIStatusError) as e:
            c.models.list()
        assert e.value.status_code == 503 and "draining" in e.value.message
        reader.join(timeout=60)
        assert not reader.is_alive()
        finishes = [ch.choices[0].finish_reason for ch in events if ch.choices and ch.choices[0].finish_reason]
        assert finishes == ["length"]
        assert s.proc.wait(timeout=30) == 0
    finally:
        s.stop(signal.SIGKILL)
