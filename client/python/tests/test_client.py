"""The installed ingot package (ingot.Client and the generated ingot.v1 stubs) against a
real ingotd serving the default model: generation (the same text as the HTTP API's),
chat, cancellation by closing the iterator, tokenize, load with progress, quantize
with a progress callback, tokens, and TLS (the HTTP API on the same certificate)."""
import json
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

import ingot
from ingot.v1 import generation_pb2, generation_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "http"))
from ingotd_server import COUNTING_PROMPT, MODEL, Ingotd, require_binaries, wait_for  # noqa: E402

ADMIN = "py-admin-token-0123456789"
READER = "py-reader-token-0123456789"


@pytest.fixture(scope="module")
def server():
    require_binaries()
    s = Ingotd(env={"INGOT_AUTH_TOKENS": f"{ADMIN} admin ops,{READER} read-only app"})
    yield s
    s.stop()


@pytest.fixture()
def admin(server):
    with ingot.Client(server.grpc_address, token=ADMIN, timeout=300) as c:
        yield c


def test_models(admin):
    models = admin.models()
    assert [m.name for m in models] == ["default"]
    m = models[0]
    assert isinstance(m, ingot.ModelInfo)
    assert m.format == "gguf" and m.architecture == "llama" and m.device == "cpu"
    assert m.parameter_count > 100_000_000 and m.has_chat_template


def test_generate_streams_the_same_text_as_the_http_api(server, admin):
    chunks = list(admin.generate("default", COUNTING_PROMPT, max_tokens=10, temperature=0))
    assert all(isinstance(c, ingot.Chunk) for c in chunks)
    last = chunks[-1]
    assert last.finish_reason == "length"
    assert last.usage.completion_tokens == 10
    assert last.usage.total_tokens == last.usage.prompt_tokens + 10
    assert last.request_id
    assert sum(len(c.token_ids) for c in chunks) == 10
    text = "".join(c.text for c in chunks)
    assert text.startswith(" 13, 14")
    # The HTTP API runs the same engine entry point: the same greedy text.
    request = urllib.request.Request(
        f"{server.base_url}/completions", method="POST",
        data=json.dumps({"model": "default", "prompt": COUNTING_PROMPT, "max_tokens": 10,
                         "temperature": 0}).encode(),
        headers={"Authorization": f"Bearer {READER}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as r:
        assert json.load(r)["choices"][0]["text"] == text
    assert admin.tokenize("default", text)  # ids of the text
    assert admin.complete("default", COUNTING_PROMPT, max_tokens=10, temperature=0).text == text


def test_chat_and_logprobs(admin):
    answer = admin.chat("default", [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
                        max_tokens=12, temperature=0)
    assert isinstance(answer, ingot.Completion)
    assert "Paris" in answer.text
    assert answer.finish_reason in ("eos", "length", "stop")
    assert answer.usage.completion_tokens == len(answer.token_ids)
    tuples = admin.chat("default", [("user", "What is the capital of France? Answer in one word.")], max_tokens=12, temperature=0)
    assert tuples.text == answer.text
    chunks = list(admin.generate("default", "Hello", max_tokens=4, temperature=0, logprobs=True, top_logprobs=2))
    lps = [lp for c in chunks for lp in c.logprobs]
    assert len(lps) == 4
    for lp in lps:
        assert lp.top[0][0] == lp.token_id and lp.top[0][1] == pytest.approx(lp.logprob, abs=1e-6)


def test_closing_the_iterator_cancels(server, admin):
    stream = admin.generate("default", COUNTING_PROMPT, max_tokens=2000, temperature=0)
    first = next(stream)
    assert first.text or first.token_ids
    assert server.metric('ingot_requests_running{model="default"}') == 1
    stream.close()
    t0 = time.monotonic()
    assert wait_for(lambda: server.metric('ingot_requests_running{model="default"}') == 0, timeout=30)
    assert time.monotonic() - t0 < 2.0


def test_errors_and_tokens(server, admin):
    with pytest.raises(ingot.IngotError) as e:
        list(admin.generate("no-such-model", "x"))
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(ingot.IngotError) as e:
        list(admin.generate("default", "x", temperature=-1))
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "temperature" in e.value.details
    with ingot.Client(server.grpc_address) as anonymous:
        with pytest.raises(ingot.IngotError) as e:
            anonymous.models()
        assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
    with ingot.Client(server.grpc_address, token=READER) as reader:
        assert [m.name for m in reader.models()] == ["default"]
        with pytest.raises(ingot.IngotError) as e:
            reader.unload("default")
        assert e.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_load_and_quantize_with_progress(admin):
    stages = []
    info = admin.load("py-copy", str(MODEL), progress=lambda p: stages.append((p.stage, p.fraction)))
    try:
        assert info.name == "py-copy" and info.format == "gguf"
        assert stages[-1][0] == "ready"
        fractions = [f for _, f in stages]
        assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
        assert {m.name for m in admin.models()} == {"default", "py-copy"}
        progress = []
        result = admin.quantize("py-copy", "gguf", quant_type="q8_0", target="py-q8", progress=progress.append)
        try:
            assert isinstance(result, ingot.QuantizeResult)
            assert result.model.name == "py-q8"
            assert result.quantized_modules > 0
            # Q4_1 -> Q8_0: about twice the weight bytes.
            assert result.bytes_after > result.bytes_before
            steps = [p.step for p in progress if p.stage == "quantize"]
            assert steps and steps == sorted(steps)
            assert progress[-1].step == progress[-1].total
            out = admin.complete("py-q8", COUNTING_PROMPT, max_tokens=6, temperature=0)
            assert out.usage.completion_tokens == 6
        finally:
            admin.unload("py-q8")
    finally:
        admin.unload("py-copy")
    assert [m.name for m in admin.models()] == ["default"]


def test_raw_stubs_are_installed(server):
    channel = grpc.insecure_channel(server.grpc_address)
    stub = generation_pb2_grpc.GenerationServiceStub(channel)
    r = stub.Tokenize(generation_pb2.TokenizeRequest(model="default", text="hello"),
                      metadata=(("authorization", f"Bearer {READER}"),), timeout=60)
    assert list(r.ids)
    channel.close()


def _self_signed(key, cert):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)


def _https_models(port, ca):
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/v1/models", context=context, timeout=30) as r:
        return [m["id"] for m in json.load(r)["data"]]


def test_tls_for_grpc_and_http_reloaded_on_sighup(tmp_path):
    require_binaries()
    key, cert = tmp_path / "server.key", tmp_path / "server.crt"
    _self_signed(key, cert)
    first_ca = tmp_path / "first.crt"
    first_ca.write_bytes(cert.read_bytes())
    s = Ingotd(env={"INGOT_TLS_CERT_FILE": str(cert), "INGOT_TLS_KEY_FILE": str(key)})
    try:
        with ingot.Client(s.grpc_address, tls=cert, timeout=120) as c:
            assert [m.name for m in c.models()] == ["default"]
            assert c.complete("default", "Hi", max_tokens=2).usage.completion_tokens == 2
        with ingot.Client(s.grpc_address, timeout=10) as plain:
            with pytest.raises(ingot.IngotError) as e:
                plain.models()
            assert e.value.code == grpc.StatusCode.UNAVAILABLE
        # The HTTP API serves the same certificate, and no plain HTTP.
        assert _https_models(s.http_port, cert) == ["default"]
        with pytest.raises(Exception):
            urllib.request.urlopen(f"http://127.0.0.1:{s.http_port}/v1/models", timeout=10).read()
        # A new certificate and key, then SIGHUP: both ports serve the new one.
        _self_signed(key, cert)
        s.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "TLS certificates reloaded" in s.read_log(), timeout=30)
        assert wait_for(lambda: _try(lambda: _https_models(s.http_port, cert)) == ["default"], timeout=10)
        with pytest.raises(urllib.error.URLError) as e:
            _https_models(s.http_port, first_ca)
        assert "CERTIFICATE_VERIFY_FAILED" in str(e.value)
        with ingot.Client(s.grpc_address, tls=cert, timeout=30) as c:
            assert wait_for(lambda: _try(lambda: [m.name for m in c.models()]) == ["default"], timeout=10)
        assert "HTTP TLS certificates not reloaded" not in s.read_log()
    finally:
        s.stop()


def _try(f):
    try:
        return f()
    except Exception:
        return None


def test_mutual_tls_for_grpc_and_http(tmp_path):
    require_binaries()

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca", "-keyout", "ca.key",
        "-out", "ca.crt")
    for name, extra in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr")
        (tmp_path / f"{name}.ext").write_text(extra + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt")
    s = Ingotd(env={"INGOT_TLS_CERT_FILE": str(tmp_path / "server.crt"),
                    "INGOT_TLS_KEY_FILE": str(tmp_path / "server.key"),
                    "INGOT_TLS_CLIENT_CA_FILE": str(tmp_path / "ca.crt")})
    try:
        with ingot.Client(s.grpc_address, tls=tmp_path / "ca.crt", client_cert=tmp_path / "client.crt",
                          client_key=tmp_path / "client.key", timeout=60) as c:
            assert [m.name for m in c.models()] == ["default"]
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        url = f"https://127.0.0.1:{s.http_port}/v1/models"
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            urllib.request.urlopen(url, context=context, timeout=30).read()  # no client certificate
        context.load_cert_chain(str(tmp_path / "client.crt"), str(tmp_path / "client.key"))
        with urllib.request.urlopen(url, context=context, timeout=30) as r:
            assert [m["id"] for m in json.load(r)["data"]] == ["default"]
    finally:
        s.stop()
