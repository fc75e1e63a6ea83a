"""The HTTP API and the page: FastAPI routes in front of one :class:`ModelWorker`.

Routes check a request (shape: 400; size: 413; values: 422) and hand it to the worker;
they never run the model. Every error body is ``{"detail": "<one line naming the fix>"}``.
The interactive documentation of the API is FastAPI's, at ``/docs``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from seq2seq.config import ServeLimitsConfig
from seq2seq.serve.worker import InvalidRequest, ModelWorker

PAGE = "static/index.html"


class TranslateRequest(BaseModel):
    """Sentences to translate; ``beam_size`` defaults to the server's ``decode.beam_size``."""

    model_config = ConfigDict(extra="forbid")
    text: list[str] = Field(examples=[["Wie geht es dir?"]])
    beam_size: int | None = Field(default=None, examples=[5])


class AlignRequest(BaseModel):
    """A source sentence and a translation of it to force-decode (e.g. a reference)."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(examples=["Wie geht es dir?"])
    target: str = Field(examples=["How are you?"])


class AttentionLevel(BaseModel):
    """Weights per decoder layer and head ``[L][H][T][S]``, and their head average ``[L][T][S]``."""

    heads: list[list[list[list[float]]]]
    average: list[list[list[float]]]


class AttentionLevels(BaseModel):
    """Subword attention (rows include the EOS step) and word attention (rows sum to 1)."""

    subword: AttentionLevel
    word: AttentionLevel


class Inspection(BaseModel):
    """One sentence pair: its tokens, its Pharaoh word alignment and its cross-attention."""

    source: str
    translation: str
    source_subwords: list[str]
    target_subwords: list[str]  # the last is "</s>": the step that ends the sentence
    source_words: list[str]
    target_words: list[str]
    source_word_spans: list[list[int]]  # [start, end) subword range of each word
    target_word_spans: list[list[int]]
    alignment: str  # Pharaoh "i-j": source word i, target word j, 0-based
    alignment_layer: int  # the decoder layer (heads averaged) the alignment comes from
    alignment_reading: str  # predict | shift: the decoder step it is read at (readout.py)
    attention: AttentionLevels


class Translation(Inspection):
    """A translation by the model, with the log-probability the search gave it."""

    score: float


class TranslateResponse(BaseModel):
    """One result per input sentence, in input order."""

    results: list[Translation]


def create_app(
    worker: ModelWorker, model_info: dict[str, Any], limits: ServeLimitsConfig
) -> FastAPI:
    """The application: JSON API, the page at ``/``; closing it stops ``worker``."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        worker.close()

    app = FastAPI(
        title="seq2seq-serve",
        description="Translate with a seq2seq checkpoint and inspect its attention.",
        lifespan=lifespan,
    )
    page = files("seq2seq.serve").joinpath(PAGE).read_text(encoding="utf-8")
    default_beam = worker.decode.beam_size

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(error)}, status_code=400)

    @app.exception_handler(InvalidRequest)
    async def invalid(_: Request, error: InvalidRequest) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness; requests waiting, requests answered and model calls (batches) so far."""
        return {
            "status": "ok",
            "queued": worker.pending,
            "answered": worker.jobs,
            "batches": worker.batches,
        }

    @app.get("/model")
    async def model() -> dict[str, Any]:
        """Family, languages, size, training step and best validation BLEU of the checkpoint."""
        return {**model_info, "default_beam_size": default_beam, "limits": asdict(limits)}

    @app.post("/translate", response_model=TranslateResponse)
    async def translate(request: TranslateRequest) -> dict[str, Any]:
        """Translate each sentence of ``text``, with its attention and word alignment."""
        texts, beam = checked_translate(request, limits, default_beam)
        results = await asyncio.wrap_future(worker.translate(texts, beam))
        return {"results": [{"source": t, **r} for t, r in zip(texts, results, strict=True)]}

    @app.post("/align", response_model=Inspection)
    async def align(request: AlignRequest) -> dict[str, Any]:
        """Force-decode ``target`` given ``source``: its attention and word alignment."""
        source, target = checked_align(request, limits)
        result = await asyncio.wrap_future(worker.align(source, target))
        return {"source": source, **result}

    return app


def checked_translate(
    request: TranslateRequest, limits: ServeLimitsConfig, default_beam: int
) -> tuple[list[str], int]:
    """The sentences (stripped) and beam size of a valid request; HTTP 413/422 otherwise."""
    beam = default_beam if request.beam_size is None else request.beam_size
    if len(request.text) > limits.max_sentences:
        raise HTTPException(
            413,
            f"text has {len(request.text)} sentences; at most {limits.max_sentences} "
            "per request (server setting limits.max_sentences)",
        )
    check_chars(limits, request.text)
    if not request.text:
        raise HTTPException(422, "text is empty: give at least one sentence")
    for index, sentence in enumerate(request.text):
        if not sentence.strip():
            raise HTTPException(422, f"text[{index}] is empty: give a sentence to translate")
    if not 1 <= beam <= limits.max_beam:
        raise HTTPException(422, f"beam_size={beam} is out of range: 1 to {limits.max_beam}")
    texts = [sentence.strip() for sentence in request.text]
    return texts, beam


def checked_align(request: AlignRequest, limits: ServeLimitsConfig) -> tuple[str, str]:
    """The source and target (stripped) of a valid request; HTTP 413/422 otherwise."""
    check_chars(limits, [request.source, request.target])
    for name in ("source", "target"):
        if not getattr(request, name).strip():
            raise HTTPException(422, f"{name} is empty: give a sentence")
    source, target = request.source.strip(), request.target.strip()
    return source, target


def check_chars(limits: ServeLimitsConfig, texts: list[str]) -> None:
    """HTTP 413 when a request holds more characters than ``limits.max_chars``."""
    chars = sum(len(text) for text in texts)
    if chars > limits.max_chars:
        raise HTTPException(
            413,
            f"the request has {chars} characters; at most {limits.max_chars} "
            "(server setting limits.max_chars)",
        )


def validation_message(error: RequestValidationError) -> str:
    """One line naming the first field that is missing or malformed, or saying the JSON is bad."""
    first = error.errors()[0]
    if first.get("type") == "json_invalid":
        return f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})"
    field = ""
    for part in first.get("loc", ())[1:]:  # the first part is "body"
        field += f"[{part}]" if isinstance(part, int) else f".{part}" if field else str(part)
    if not field:
        return "the body must be a JSON object (sent with Content-Type: application/json)"
    if first.get("type") == "missing":
        return f"missing field: {field}"
    if first.get("type") == "extra_forbidden":
        return f"unknown field: {field}"
    return f"field {field}: {first.get('msg', 'invalid')}"
