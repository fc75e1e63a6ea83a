"""The one thread that runs the model: a queue of requests, decoded together in batches.

HTTP handlers never touch the model. They put a job on the queue and wait on its future;
the worker takes every job waiting (up to ``max_batch_sentences`` sentences), decodes all
translation jobs of one beam size in one :func:`~seq2seq.inference.decode_corpus` call and
all alignment jobs in one :func:`~seq2seq.alignment_eval.forced_attention` call, then
answers each job. A model on one device gains nothing from two threads stepping it at
once, and batching requests that arrive together is what makes many clients fast.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from seq2seq.alignment_eval import forced_attention
from seq2seq.config import DecodeConfig
from seq2seq.inference import Translator, decode_corpus
from seq2seq.models.base import position_limits
from seq2seq.readout import Readout
from seq2seq.serve.inspection import describe_pair

log = logging.getLogger(__name__)


class InvalidRequest(ValueError):
    """A request the model cannot take (e.g. longer than its positions); the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class TranslateJob:
    """Sentences to translate with one beam size; the future gets one result per sentence."""

    sources: list[list[int]]
    beam_size: int
    future: Future[list[dict[str, Any]]]


@dataclass
class AlignJob:
    """A source and a given target to force-decode; the future gets one result."""

    source: list[int]
    target: list[int]
    future: Future[dict[str, Any]]


Job = TranslateJob | AlignJob


class ModelWorker:
    """Owns the model; decodes queued jobs in batches on a single thread."""

    def __init__(
        self,
        translator: Translator,
        decode: DecodeConfig,
        readout: Readout | None = None,
        max_batch_sentences: int = 64,
    ) -> None:
        self.translator = translator
        self.decode = decode
        self.readout = readout or Readout()  # how the alignment is read from the attention
        self.max_batch_sentences = max_batch_sentences
        self.batches = 0  # model calls so far (one per beam size or alignment group)
        self.jobs = 0  # requests answered so far
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="seq2seq-model", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Jobs waiting for the worker (not counting the batch being decoded)."""
        return self._queue.qsize()

    def translate(self, texts: list[str], beam_size: int) -> Future[list[dict[str, Any]]]:
        """Queue ``texts`` for translation; the future holds one result dict per text."""
        sources = self.translator.tokenizer.encode_src(texts)
        src_limit, _ = position_limits(self.translator.model.max_positions)
        for index, ids in enumerate(sources):
            self._check_length(f"text[{index}]", ids, src_limit)
        future: Future[list[dict[str, Any]]] = Future()
        self._queue.put(TranslateJob(sources, beam_size, future))
        return future

    def align(self, source: str, target: str) -> Future[dict[str, Any]]:
        """Queue a pair whose ``target`` is force-decoded; the future holds one result dict."""
        tokenizer = self.translator.tokenizer
        src_limit, tgt_limit = position_limits(self.translator.model.max_positions)
        src_ids = tokenizer.encode_src([source])[0]
        tgt_ids = tokenizer.encode_tgt([target])[0]
        self._check_length("source", src_ids, src_limit)
        self._check_length("target", tgt_ids, tgt_limit)
        future: Future[dict[str, Any]] = Future()
        self._queue.put(AlignJob(src_ids, tgt_ids, future))
        return future

    @staticmethod
    def _check_length(name: str, ids: list[int], limit: int | None) -> None:
        if limit is not None and len(ids) > limit:
            raise InvalidRequest(
                413, f"{name} has {len(ids)} subwords; this model reads at most {limit}"
            )

    def close(self) -> None:
        """Finish the jobs already queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch, stop = self._gather(job)
            self._process(batch)
            if stop:
                return

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        """``first`` and the jobs queued behind it, up to ``max_batch_sentences`` sentences."""
        batch, size = [first], _size(first)
        while size < self.max_batch_sentences:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return batch, True
            batch.append(job)
            size += _size(job)
        return batch, False

    def _process(self, batch: list[Job]) -> None:
        """Decode ``batch`` grouped by kind and beam size; a failure fails only its group."""
        groups: dict[int | None, list[Job]] = defaultdict(list)
        for job in batch:
            groups[job.beam_size if isinstance(job, TranslateJob) else None].append(job)
        for beam_size, jobs in groups.items():
            try:
                if beam_size is None:
                    self._align([job for job in jobs if isinstance(job, AlignJob)])
                else:
                    self._translate([j for j in jobs if isinstance(j, TranslateJob)], beam_size)
            except Exception as error:  # answer the requests (HTTP 500), keep serving
                log.exception("decoding a batch of %d requests failed", len(jobs))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
            self.batches += 1
            self.jobs += len(jobs)

    def _translate(self, jobs: list[TranslateJob], beam_size: int) -> None:
        sources = [ids for job in jobs for ids in job.sources]
        opts = dataclasses.replace(self.decode, beam_size=beam_size, nbest=1)
        model, device = self.translator.model, self.translator.device
        nbests = decode_corpus(model, sources, device, opts, need_weights=True)
        results = iter(nbests)
        for job in jobs:
            answers = []
            for ids in job.sources:
                best = next(results)[0]
                assert best.attention is not None  # need_weights=True; sources are non-empty
                answer = describe_pair(
                    self.translator.tokenizer,
                    ids,
                    best.tokens,
                    best.attention,
                    self.readout,
                )
                answers.append({**answer, "score": best.score})
            job.future.set_result(answers)

    def _align(self, jobs: list[AlignJob]) -> None:
        model, device = self.translator.model, self.translator.device
        crosses = forced_attention(
            model, [j.source for j in jobs], [j.target for j in jobs], device, len(jobs)
        )
        for job, cross in zip(jobs, crosses, strict=True):
            answer = describe_pair(
                self.translator.tokenizer, job.source, job.target, cross, self.readout
            )
            job.future.set_result(answer)


def _size(job: Job) -> int:
    """Sentences a job adds to a batch."""
    return len(job.sources) if isinstance(job, TranslateJob) else 1
