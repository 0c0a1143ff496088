"""A small typed wrapper over the generated ingot.v1 stubs.

    from ingot import Client
    with Client("127.0.0.1:50051", token="...") as c:
        for chunk in c.generate("default", "Once upon a time", max_tokens=32):
            print(chunk.text, end="")
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Union

import grpc

from ingot.v1 import generation_pb2, generation_pb2_grpc, model_pb2, model_pb2_grpc
from ingot.v1 import quant_config_pb2, quantization_pb2, quantization_pb2_grpc

_FINISH = {
    generation_pb2.FINISH_REASON_LENGTH: "length",
    generation_pb2.FINISH_REASON_STOP: "stop",
    generation_pb2.FINISH_REASON_EOS: "eos",
    generation_pb2.FINISH_REASON_CANCELLED: "cancelled",
}

Message = Union[Mapping[str, str], Tuple[str, str]]


class IngotError(Exception):
    """A call that ended with a gRPC status other than OK."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_prompt_tokens: int = 0


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)  # most likely first


@dataclass
class Chunk:
    """One streamed message: new text, and on a completion's last one its finish reason
    ("length", "stop", "eos", "cancelled"); the stream's last one also has usage."""
    text: str
    token_ids: list[int]
    index: int = 0
    finish_reason: Optional[str] = None
    usage: Optional[Usage] = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
    request_id: str = ""
    decode_tokens_per_second: float = 0.0


@dataclass
class Completion:
    text: str
    finish_reason: Optional[str]
    usage: Optional[Usage]
    token_ids: list[int] = field(default_factory=list)
    request_id: str = ""


@dataclass
class ModelInfo:
    name: str
    source: str
    format: str
    architecture: str
    device: str
    backend: str
    parameter_count: int
    bytes_resident: int
    context_length: int
    quantization: str
    has_chat_template: bool

    @classmethod
    def from_proto(cls, m: model_pb2.ModelInfo) -> "ModelInfo":
        return cls(name=m.name, source=m.source, format=m.format, architecture=m.architecture, device=m.device,
                   backend=m.backend, parameter_count=m.parameter_count, bytes_resident=m.bytes_resident,
                   context_length=m.context_length, quantization=m.quantization,
                   has_chat_template=m.has_chat_template)


@dataclass
class LoadProgress:
    stage: str
    fraction: float
    detail: str


@dataclass
class QuantizeProgress:
    stage: str
    step: int
    total: int
    module: str
    method: str
    elapsed_seconds: float


@dataclass
class QuantizeResult:
    model: ModelInfo
    method_used: str
    note: str
    quantized_modules: int
    skipped_modules: int
    bytes_before: int
    bytes_after: int
    seconds: float


def _read(value: Union[str, Path, bytes, None]) -> Optional[bytes]:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


class Client:
    """A connection to ingotd's gRPC port.

    token: a bearer token (sent as `authorization: Bearer TOKEN` on every call).
    tls: False/None for plaintext; True for TLS with the system's roots; or the CA
    certificate (a path or PEM bytes) that signed the server's. client_cert and
    client_key (paths or PEM bytes) for mutual TLS.
    timeout: default seconds per call (None: no deadline).
    """

    def __init__(self, address: str, token: Optional[str] = None, tls: Union[bool, str, Path, bytes, None] = None,
                 *, client_cert: Union[str, Path, bytes, None] = None,
                 client_key: Union[str, Path, bytes, None] = None, timeout: Optional[float] = None,
                 options: Sequence[Tuple[str, object]] = ()):
        if tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=None if tls is True else _read(tls),
                private_key=_read(client_key), certificate_chain=_read(client_cert))
            self._channel = grpc.secure_channel(address, credentials, options=list(options))
        else:
            self._channel = grpc.insecure_channel(address, options=list(options))
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout
        self._models = model_pb2_grpc.ModelServiceStub(self._channel)
        self._generation = generation_pb2_grpc.GenerationServiceStub(self._channel)
        self._quantization = quantization_pb2_grpc.QuantizationServiceStub(self._channel)

    # The raw stubs, for what the wrapper does not cover.
    @property
    def model_service(self) -> model_pb2_grpc.ModelServiceStub:
        return self._models

    @property
    def generation_service(self) -> generation_pb2_grpc.GenerationServiceStub:
        return self._generation

    @property
    def quantization_service(self) -> quantization_pb2_grpc.QuantizationServiceStub:
        return self._quantization

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _kw(self, timeout: Optional[float]):
        return {"metadata": self._metadata, "timeout": timeout if timeout is not None else self._timeout}

    # ---- generation

    def generate(self, model: str, prompt: Optional[str] = None, *, messages: Optional[Iterable[Message]] = None,
                 max_tokens: Optional[int] = None, temperature: Optional[float] = None,
                 top_k: Optional[int] = None, top_p: Optional[float] = None, min_p: Optional[float] = None,
                 repetition_penalty: Optional[float] = None, presence_penalty: Optional[float] = None,
                 frequency_penalty: Optional[float] = None, seed: Optional[int] = None,
                 stop: Sequence[str] = (), logprobs: bool = False, top_logprobs: int = 0, n: int = 1,
                 timeout: Optional[float] = None) -> Iterator[Chunk]:
        """Streams the generation of a raw prompt or of chat messages. Closing the
        iterator early (break, or leaving a with-block) cancels the call, and the server
        stops generating."""
        request = generation_pb2.GenerateRequest(model=model, prompt=prompt or "", stop=list(stop),
                                                 logprobs=logprobs, top_logprobs=top_logprobs, n=n)
        for m in messages or ():
            role, content = (m["role"], m["content"]) if isinstance(m, Mapping) else m
            request.messages.add(role=role, content=content)
        for name, value in (("max_tokens", max_tokens), ("temperature", temperature), ("top_k", top_k),
                            ("top_p", top_p), ("min_p", min_p), ("repetition_penalty", repetition_penalty),
                            ("presence_penalty", presence_penalty), ("frequency_penalty", frequency_penalty),
                            ("seed", seed)):
            if value is not None:
                setattr(request, name, value)
        call = self._generation.Generate(request, **self._kw(timeout))
        return self._chunks(call)

    @staticmethod
    def _chunks(call) -> Iterator[Chunk]:
        try:
            for r in call:
                usage = None
                if r.HasField("usage"):
                    u = r.usage
                    usage = Usage(u.prompt_tokens, u.completion_tokens, u.total_tokens, u.cached_prompt_tokens)
                yield Chunk(text=r.text, token_ids=list(r.token_ids), index=r.index,
                            finish_reason=_FINISH.get(r.finish_reason), usage=usage,
                            logprobs=[TokenLogprob(lp.token_id, lp.logprob, [(t.token_id, t.logprob) for t in lp.top])
                                      for lp in r.logprobs],
                            request_id=r.request_id,
                            decode_tokens_per_second=r.timings.decode_tokens_per_second)
        except grpc.RpcError as e:
            raise IngotError(e.code(), e.details()) from None
        finally:
            call.cancel()  # no-op once the call has ended

    def complete(self, model: str, prompt: str, **sampling) -> Completion:
        """generate() of a raw prompt, collected (n = 1)."""
        return self._collect(self.generate(model, prompt, **sampling))

    def chat(self, model: str, messages: Iterable[Message], **sampling) -> Completion:
        """The assistant's answer to chat messages ({"role", "content"} or (role, content)),
        rendered with the model's chat template."""
        return self._collect(self.generate(model, messages=list(messages), **sampling))

    @staticmethod
    def _collect(chunks: Iterator[Chunk]) -> Completion:
        text, ids, finish, usage, request_id = [], [], None, None, ""
        for c in chunks:
            text.append(c.text)
            ids.extend(c.token_ids)
            finish = c.finish_reason or finish
            usage = c.usage or usage
            request_id = c.request_id or request_id
        return Completion("".join(text), finish, usage, ids, request_id)

    def tokenize(self, model: str, text: str, *, timeout: Optional[float] = None) -> list[int]:
        try:
            r = self._generation.Tokenize(generation_pb2.TokenizeRequest(model=model, text=text), **self._kw(timeout))
        except grpc.RpcError as e:
            raise IngotError(e.code(), e.details()) from None
        return list(r.ids)

    # ---- models

    def models(self, *, timeout: Optional[float] = None) -> list[ModelInfo]:
        try:
            r = self._models.ListModels(model_pb2.ListModelsRequest(), **self._kw(timeout))
        except grpc.RpcError as e:
            raise IngotError(e.code(), e.details()) from None
        return [ModelInfo.from_proto(m) for m in r.models]

    def load(self, name: str, source: str, *, format: str = "", device: str = "", backend: str = "",
             context_length: int = 0, progress: Optional[Callable[[LoadProgress], None]] = None,
             timeout: Optional[float] = None) -> ModelInfo:
        """Loads a checkpoint (a path on the server) as `name`; `progress` sees each stage."""
        request = model_pb2.LoadModelRequest(name=name, source=source, format=format, device=device,
                                             backend=backend, context_length=context_length)
        info = None
        try:
            for r in self._models.LoadModel(request, **self._kw(timeout)):
                if progress is not None:
                    progress(LoadProgress(r.progress.stage, r.progress.fraction, r.progress.detail))
                if r.HasField("model"):
                    info = ModelInfo.from_proto(r.model)
        except grpc.RpcError as e:
            raise IngotError(e.code(), e.details()) from None
        if info is None:
            raise IngotError(grpc.StatusCode.INTERNAL, "LoadModel ended without the model")
        return info

    def unload(self, name: str, *, timeout: Optional[float] = None) -> int:
        """Unloads `name`; returns the streams still running on it (they finish)."""
        try:
            r = self._models.UnloadModel(model_pb2.UnloadModelRequest(name=name), **self._kw(timeout))
        except grpc.RpcError as e:
            raise IngotError(e.code(), e.details()) from None
        return r.running_requests

    def quantize(self, source: str, method: str, *, target: str = "", bits: int = 0, group_size: int = 0,
                 quant_type: str = "", device: str = "", allow_fallback: bool = False,
                 backend_options: Optional[Mapping[str, str]] = None,
                 progress: Optional[Callable[[QuantizeProgress], None]] = None,
                 timeout: Optional[float] = None) -> QuantizeResult:
        """Quantizes a loaded model (into `target`, or in place); `progress` sees each
        module as it is done."""
        config = quant_config_pb2.QuantizationConfig(method=method, bits=bits, group_size=group_size,
                                                     quant_type=quant_type, allow_fallback=allow_fallback,
                                                     backend_options=dict(backend_options or {}))
        request = quantization_pb2.QuantizeModelRequest(source=source, target=target, config=config, device=device)
        last = None
        try:
            for r in self._quantization.QuantizeModel(request, **self._kw(timeout)):
                if progress is not None and r.HasField("progress"):
                    p = r.progress
                    progress(QuantizeProgress(p.stage, p.step, p.total, p.module, p.method, p.elapsed_seconds))
                if r.HasField("model"):
                    last = r
        except grpc.RpcError as e:
            raise IngotError(e.code(), e.details()) from None
        if last is None:
            raise IngotError(grpc.StatusCode.INTERNAL, "QuantizeModel ended without the model")
        return QuantizeResult(ModelInfo.from_proto(last.model), last.method_used, last.note, last.quantized_modules,
                              last.skipped_modules, last.bytes_before, last.bytes_after, last.seconds)
