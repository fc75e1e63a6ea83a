"""seq2seq-serve: the JSON API, its errors, batching under load, and the page in a browser."""

from __future__ import annotations

import html
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import urllib.parse
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip(
    "fastapi", reason="seq2seq-serve needs the serve extra: pip install -e '.[serve]'"
)
pytest.importorskip("httpx", reason="FastAPI's test client needs httpx: pip install -e '.[serve]'")
import httpx  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402

with warnings.catch_warnings():  # Starlette >= 1.x prefers httpx2; httpx works the same
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient  # noqa: E402

from seq2seq.cli.serve import build_app  # noqa: E402
from seq2seq.config import DecodeConfig  # noqa: E402
from seq2seq.errors import UserError  # noqa: E402
from seq2seq.inference import Translator, decode_corpus  # noqa: E402
from seq2seq.training.trainer import train  # noqa: E402
from tests.conftest import compose_config, tiny_overrides  # noqa: E402

SENTENCES = ["the red car sees a dog", "every child likes this big tree"]
BEAM = 3
LIMITS = ["limits.max_sentences=4", "limits.max_chars=300", "limits.max_beam=8"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def runs(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run directories of a tiny trained RNN and a tiny trained Transformer."""
    work = tmp_path_factory.mktemp("serve")
    for family in ("rnn", "transformer"):
        overrides = tiny_overrides(synthetic_dir, work / family, family)
        train(compose_config("train", overrides), work / family / "run")
    return {family: work / family / "run" for family in ("rnn", "transformer")}


def make_app(run: Path, *overrides: str) -> FastAPI:
    """The app ``seq2seq-serve checkpoint=<run>`` would serve, with the test limits."""
    cfg = compose_config(
        "serve", [f"checkpoint={run}", f"decode.beam_size={BEAM}", *LIMITS, *overrides]
    )
    return build_app(cfg)


@pytest.fixture(scope="module", params=["rnn", "transformer"])
def family(request: pytest.FixtureRequest) -> str:
    """Each model family in turn."""
    return request.param


@pytest.fixture(scope="module")
def client(runs: dict[str, Path], family: str) -> Iterator[TestClient]:
    """A test client of the server of one family's model."""
    with TestClient(make_app(runs[family])) as test_client:
        yield test_client


def expected_translations(run: Path, sentences: list[str], beam: int) -> list[str]:
    """What :func:`decode_corpus` translates ``sentences`` to, one at a time (no batching)."""
    translator = Translator.from_checkpoint(run, torch.device("cpu"))
    out = []
    for sentence in sentences:
        sources = translator.tokenizer.encode_src([sentence])
        best = decode_corpus(translator.model, sources, torch.device("cpu"), DecodeConfig(beam))
        out.append(translator.tokenizer.decode_tgt(best[0][0].tokens))
    return out


def check_inspection(result: dict[str, Any], layers: int, heads: int) -> None:
    """Every attention array matches the token lists, rows are distributions, links in range."""
    src, tgt = result["source_subwords"], result["target_subwords"]
    src_words, tgt_words = result["source_words"], result["target_words"]
    assert tgt[-1] == "</s>" and "</s>" not in tgt[:-1]
    sub, word = result["attention"]["subword"], result["attention"]["word"]
    heads_sub = np.array(sub["heads"])
    assert heads_sub.shape == (layers, heads, len(tgt), len(src))
    assert np.array(sub["average"]).shape == (layers, len(tgt), len(src))
    assert np.array(word["heads"]).shape == (layers, heads, len(tgt_words), len(src_words))
    assert np.array(word["average"]).shape == (layers, len(tgt_words), len(src_words))
    np.testing.assert_allclose(heads_sub.sum(-1), 1.0, atol=1e-3)
    np.testing.assert_allclose(np.array(sub["average"]), heads_sub.mean(1), atol=1e-4)
    np.testing.assert_allclose(np.array(word["heads"]).sum(-1), 1.0, atol=1e-3)
    np.testing.assert_allclose(np.array(word["average"]).sum(-1), 1.0, atol=1e-3)
    # Word spans cover the subwords they name, and the words are their text.
    for spans, pieces, names in (
        (result["source_word_spans"], src, src_words),
        (result["target_word_spans"], tgt, tgt_words),
    ):
        assert [("".join(pieces[a:b])).replace("\u2581", "") for a, b in spans] == names
    links = [tuple(map(int, link.split("-"))) for link in result["alignment"].split()]
    assert links, "target words get their argmax link"
    assert all(0 <= i < len(src_words) and 0 <= j < len(tgt_words) for i, j in links)
    # at most one link per target word: one whose attention went to NULL stays unaligned
    assert len({j for _, j in links}) == len(links)
    # A link is the argmax of its word-level row in the alignment layer (the predict step).
    assert result["alignment_reading"] == "predict"
    average = np.array(word["average"])[result["alignment_layer"]]  # (Tw, Sw)
    assert {(int(average[j].argmax()), j) for _, j in links} == set(links)


def test_model_description(client: TestClient, runs: dict[str, Path], family: str) -> None:
    """GET /model names family, languages, size, step and BLEU; GET /health answers."""
    info = client.get("/model").json()
    translator = Translator.from_checkpoint(runs[family], torch.device("cpu"))
    state = translator.checkpoint
    assert info["family"] == family
    assert info["parameters"] == sum(p.numel() for p in translator.model.parameters())
    assert info["step"] == state["train_state"]["step"] > 0
    assert info["best_valid_bleu"] == pytest.approx(state["train_state"]["best_bleu"])
    assert (info["source_language"], info["target_language"]) == (
        state["config"]["data"]["src"],
        state["config"]["data"]["tgt"],
    )
    expected_shape = (1, 1) if family == "rnn" else (2, 2)  # tiny_overrides: 2 layers x 2 heads
    assert (info["layers"], info["heads"]) == expected_shape
    assert info["default_beam_size"] == BEAM
    assert client.get("/health").json()["status"] == "ok"
    schema = client.get("/openapi.json").json()
    assert {"/translate", "/align", "/model", "/health"} <= set(schema["paths"])
    assert "Inspection" in schema["components"]["schemas"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="heatmap"' in page.text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import""", page.text), (
        "the page loads nothing from elsewhere"
    )


def test_translate_returns_consistent_attention(
    client: TestClient, runs: dict[str, Path], family: str
) -> None:
    """Translations equal the library's; attention arrays match their tokens and sum to 1."""
    response = client.post("/translate", json={"text": SENTENCES, "beam_size": BEAM})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    info = client.get("/model").json()
    assert [r["source"] for r in results] == SENTENCES
    assert [r["translation"] for r in results] == expected_translations(
        runs[family], SENTENCES, BEAM
    )
    for result in results:
        check_inspection(result, info["layers"], info["heads"])


def test_align_of_own_translation_gives_the_same_attention(client: TestClient) -> None:
    """Force-decoding the model's translation reproduces the attention of its search."""
    greedy = client.post("/translate", json={"text": SENTENCES, "beam_size": 1}).json()
    info = client.get("/model").json()
    for result in greedy["results"]:
        forced = client.post(
            "/align", json={"source": result["source"], "target": result["translation"]}
        )
        assert forced.status_code == 200, forced.text
        forced = forced.json()
        check_inspection(forced, info["layers"], info["heads"])
        assert forced["target_subwords"] == result["target_subwords"]
        assert forced["alignment"] == result["alignment"]
        for level in ("subword", "word"):
            np.testing.assert_allclose(
                forced["attention"][level]["heads"], result["attention"][level]["heads"], atol=1e-4
            )


def test_align_a_reference_differs_from_the_translation(client: TestClient) -> None:
    """/align labels the rows with the given target, not with the model's own output."""
    target = "le chien voit la voiture"
    forced = client.post("/align", json={"source": SENTENCES[0], "target": target}).json()
    assert forced["translation"] == target
    assert forced["target_words"] == target.split()
    assert np.array(forced["attention"]["word"]["average"]).shape[1] == len(target.split())


BAD_REQUESTS = [
    # (path, raw body, status, words the message must contain)
    ("/translate", "{not json", 400, "not valid JSON"),
    ("/translate", "{}", 400, "missing field: text"),
    ("/translate", '{"text": "a sentence"}', 400, "field text"),
    ("/translate", '{"text": ["ok", 3]}', 400, "field text[1]"),
    ("/translate", '{"text": ["ok"], "beam": 2}', 400, "unknown field: beam"),
    ("/translate", '{"text": ["ok"], "beam_size": "wide"}', 400, "field beam_size"),
    ("/translate", "[1, 2]", 400, "JSON object"),
    ("/align", '{"source": "the dog"}', 400, "missing field: target"),
    ("/translate", '{"text": ["a", "b", "c", "d", "e"]}', 413, "at most 4"),
    ("/translate", '{"text": ["' + "a " * 151 + '"]}', 413, "at most 300"),
    ("/align", '{"source": "' + "a " * 80 + '", "target": "' + "b " * 80 + '"}', 413, "300"),
    ("/translate", '{"text": []}', 422, "text is empty"),
    ("/translate", '{"text": ["ok", "  "]}', 422, "text[1] is empty"),
    ("/translate", '{"text": ["ok"], "beam_size": 0}', 422, "beam_size=0 is out of range"),
    ("/translate", '{"text": ["ok"], "beam_size": 9}', 422, "1 to 8"),
    ("/align", '{"source": "the dog", "target": ""}', 422, "target is empty"),
    ("/align", '{"source": " ", "target": "le chien"}', 422, "source is empty"),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_a_clear_error_and_the_server_keeps_serving(
    client: TestClient, path: str, body: str, status: int, message: str
) -> None:
    """Each bad request gets its status and a message naming the problem; then all is well."""
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    after = client.post("/translate", json={"text": SENTENCES[:1]})
    assert after.status_code == 200 and after.json()["results"][0]["translation"]


def test_source_longer_than_the_model_reads_is_refused(runs: dict[str, Path]) -> None:
    """A Transformer reads max_positions subwords; a longer sentence gets 413, not a crash."""
    with TestClient(make_app(runs["transformer"], "limits.max_chars=100000")) as client:
        limit = client.get("/model").json()["max_positions"]
        response = client.post("/translate", json={"text": [" ".join(["dog"] * (limit + 1))]})
        assert response.status_code == 413 and f"at most {limit}" in response.json()["detail"]
        response = client.post(
            "/align", json={"source": "dog", "target": " ".join(["chien"] * limit)}
        )
        assert response.status_code == 413 and f"at most {limit - 1}" in response.json()["detail"]
        assert client.get("/health").json()["status"] == "ok"


@pytest.fixture(scope="module")
def live_server(runs: dict[str, Path]) -> Iterator[str]:
    """The Transformer's app served by uvicorn on a free loopback port; yields its base URL."""
    app = make_app(runs["transformer"], "limits.max_sentences=8", "limits.max_chars=2000")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(600):
            if server.started:
                break
            thread.join(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def test_concurrent_clients_are_batched_and_all_answered(
    live_server: str, runs: dict[str, Path]
) -> None:
    """200 requests from 20 concurrent clients: every one answered, correctly, in batches."""
    expected = dict(
        zip(SENTENCES, expected_translations(runs["transformer"], SENTENCES, BEAM), strict=True)
    )
    before = httpx.get(f"{live_server}/health").json()

    local = threading.local()  # each client thread keeps one connection, as a real client

    def request(k: int) -> tuple[str, int, str]:
        sentence = SENTENCES[k % len(SENTENCES)]
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=live_server, timeout=120)
        reply = local.http.post("/translate", json={"text": [sentence]})
        return sentence, reply.status_code, reply.json()["results"][0]["translation"]

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(request, range(200)))
    assert [status for _, status, _ in answers] == [200] * 200
    assert all(translation == expected[sentence] for sentence, _, translation in answers)
    after = httpx.get(f"{live_server}/health").json()
    assert after["answered"] - before["answered"] == 200
    assert after["batches"] - before["batches"] < 200, "concurrent requests share model calls"


def chromium_dom(url: str, profile: Path) -> str:
    """The page's DOM after headless Chromium ran its scripts (virtual time, no network)."""
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=30000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)"
)
def test_page_in_a_browser_draws_one_heatmap_row_per_target_token(
    live_server: str, tmp_path: Path
) -> None:
    """Chromium loads /, submits "How are you?": a heatmap row per target token, hover works."""
    sentence = "How are you?"
    query = urllib.parse.urlencode({"text": sentence, "run": "translate", "hover": 0})
    dom = chromium_dom(f"{live_server}/?{query}", tmp_path / "profile")
    assert 'data-state="done"' in dom, "the page never finished its request"
    rows = re.findall(r'<g class="heat-row[^"]*" data-row="(\d+)" data-token="([^"]*)"', dom)
    expected = httpx.post(f"{live_server}/translate", json={"text": [sentence]}).json()
    tokens = expected["results"][0]["target_subwords"]
    assert [int(t) for t, _ in rows] == list(range(len(tokens)))
    assert [html.unescape(token) for _, token in rows] == tokens
    assert len(re.findall(r'<rect class="cell', dom)) == len(tokens) * len(
        expected["results"][0]["source_subwords"]
    )
    assert 'id="legend"' in dom
    # Hovering the first target token lit it and listed the source tokens with weights.
    assert re.search(r'<g class="heat-row active" data-row="0"', dom)
    hover = dom[dom.index('id="hover-info"') :]
    assert re.search(r"<b>[^<]+</b> attends to:", hover)
    weights = [float(w) for w in re.findall(r"<td>(\d\.\d{3})</td>", hover)]
    assert weights and weights == sorted(weights, reverse=True) and weights[0] > 0


def test_without_the_serve_extra_one_line_says_what_to_install(tmp_path: Path) -> None:
    """With FastAPI missing, seq2seq-serve prints one line naming the extra and exits 2."""
    code = (
        "import sys; sys.modules['fastapi'] = None; sys.modules['uvicorn'] = None;"
        "sys.argv = ['seq2seq-serve', 'checkpoint=nowhere.pt'];"
        "from seq2seq.cli.serve import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'seq2seq[serve]'" in lines[0], result.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("alignment_layer=2", "alignment_layer=2: this model has 2 decoder layer(s)"),
        ("limits.max_beam=2", "decode.beam_size=3 is above limits.max_beam=2"),
        ("limits.max_chars=0", "limits.max_chars=0: give a positive number"),
    ],
)
def test_bad_server_settings_fail_at_start_up(
    runs: dict[str, Path], override: str, message: str
) -> None:
    """Settings the server cannot honour stop it before it serves, with one clear message."""
    with pytest.raises(UserError, match=re.escape(message)):
        make_app(runs["transformer"], override)
