"""CuPL sentences: from an OpenAI-compatible endpoint (a loopback server here) and from URLs."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from susx_cli import cupl
from susx_cli.adapters.llm import LLMTransient, RetryPolicy, parse_retry_after, with_retries
from susx_cli.cupl import questions
from susx_cli.datasets import registry
from susx_cli.errors import SusxError
from susx_cli.net import clients, fetch
from tests.helpers import invoke

MODEL = "fake-llm"
KEY = "sk-test-key"


# ---------------------------------------------------------------------------------------------------
# A loopback chat-completions server


class FakeLLM:
    """Speaks POST /v1/chat/completions and GET /v1/models; serves files under GET /files/.

    ``rules`` are functions (prompt, body) -> None (answer normally) or a response tuple
    (status, headers, body bytes, delay seconds). Answers are deterministic: they depend on the
    prompt and the seed only.
    """

    def __init__(self):
        self.requests: list[dict] = []
        self.file_gets = 0
        self.rules: list = []
        self.files: dict[str, bytes] = {}
        self.models = {MODEL}
        self.answer = self.default_answer
        self.lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, headers, body, delay=0.0):
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def do_GET(self):
                if self.path.startswith("/files/"):
                    with owner.lock:
                        owner.file_gets += 1
                    data = owner.files.get(self.path[len("/files/") :])
                    if data is None:
                        return self._send(404, {"Content-Type": "text/plain"}, b"not found")
                    return self._send(200, {"Content-Type": "application/json"}, data)
                if self.path == "/v1/models":
                    body = {"object": "list", "data": [{"id": MODEL, "object": "model"}]}
                    return self._send(200, {"Content-Type": "application/json"}, json.dumps(body).encode())
                self._send(404, {"Content-Type": "text/plain"}, b"not found")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with owner.lock:
                    owner.requests.append({**body, "auth": self.headers.get("Authorization")})
                if self.path != "/v1/chat/completions":
                    return self._send(
                        404, {"Content-Type": "application/json"}, b'{"error": {"message": "no route"}}'
                    )
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    err = {
                        "error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}
                    }
                    return self._send(401, {"Content-Type": "application/json"}, json.dumps(err).encode())
                if body.get("model") not in owner.models:
                    err = {
                        "error": {
                            "message": f"The model `{body.get('model')}` does not exist",
                            "code": "model_not_found",
                        }
                    }
                    return self._send(404, {"Content-Type": "application/json"}, json.dumps(err).encode())
                prompt = body["messages"][-1]["content"]
                for rule in owner.rules:
                    response = rule(prompt, body)
                    if response is not None:
                        return self._send(*response)
                text = owner.answer(prompt, body)
                reply = {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": MODEL,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                }
                self._send(200, {"Content-Type": "application/json"}, json.dumps(reply).encode())

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.base_url = self.url + "/v1"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @staticmethod
    def default_answer(prompt: str, body: dict) -> str:
        return f"{prompt} shows detail {body.get('seed', 0) % 997}. A second sentence that is cut."

    def prompts(self) -> list[str]:
        return [r["messages"][-1]["content"] for r in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def llm_server():
    server = FakeLLM()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("SUSX_CACHE_DIR", str(tmp_path / "user-cache"))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(cupl.settings, "BACKOFF_BASE", 0.01)
    monkeypatch.setattr(cupl.settings, "BACKOFF_CAP", 0.05)


CLASSES = ["cat", "owl", "eagle"]


def class_file(tmp_path: Path, names=CLASSES) -> Path:
    path = tmp_path / "classes.txt"
    path.write_text("\n".join(names) + "\n")
    return path


def llm_args(server: FakeLLM, tmp_path: Path, *extra, samples: int = 2, out: str = "prompts.json") -> list:
    return [
        "prompts",
        "-c",
        class_file(tmp_path),
        "-o",
        tmp_path / out,
        "--llm",
        "--llm-base-url",
        server.base_url,
        "--llm-model",
        MODEL,
        "--llm-questions",
        "generic",
        "--llm-samples",
        samples,
        "--llm-concurrency",
        4,
        "--llm-timeout",
        5,
        *extra,
    ]


def flat(text: str) -> str:
    return " ".join(text.split())


def cache_lines(path: Path) -> list[dict]:
    """The answer rows of a cache, after the header line that marks it as susx's."""
    header, *rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    assert header == {"susx": "susx.llm_cache", "schema_version": 1}
    return rows


# ---------------------------------------------------------------------------------------------------
# Pure parts: questions, cleaning, retries


def test_question_sets_match_the_dataset_keys():
    for name, spec in registry.DATASETS.items():
        assert 1 <= len(spec.cupl_questions) <= 12, name
        for q in spec.cupl_questions:
            questions.check_question(q, name)
    assert len(registry.get("imagenet-r").cupl_questions) == 12


def test_article_and_formatting():
    fq = questions.format_question
    assert fq("Describe what {article} {class} looks like", "owl") == "Describe what an owl looks like"
    assert fq("Describe what {article} {class} looks like", "cat") == "Describe what a cat looks like"
    assert fq("How can you identify {article} {class}?", "unicorn") == "How can you identify a unicorn?"
    assert fq("What does {article} {class} look like?", "hourglass") == "What does an hourglass look like?"
    assert fq("Describe a photo taken in {class}", "Ecuador") == "Describe a photo taken in Ecuador"
    assert fq("{article} {class}", "{weird} name") == "a {weird} name"  # braces in names are safe


def test_resolve_questions(tmp_path):
    qs, source = questions.resolve_questions(None, "cub")
    assert source == "dataset:cub" and any("bird" in q for q in qs)
    assert questions.resolve_questions(None, None)[1] == "generic"
    assert questions.resolve_questions(None, "somewhere-else")[1] == "generic"
    assert questions.resolve_questions("flowers102", None)[1] == "dataset:flowers102"
    path = tmp_path / "q.txt"
    path.write_text("# mine\nWhat colour is {article} {class}?\n\n")
    assert questions.resolve_questions(str(path), None) == (
        ["What colour is {article} {class}?"],
        str(path),
    )
    path.write_text("What colour is it?\n")
    with pytest.raises(SusxError, match="no {class} placeholder"):
        questions.resolve_questions(str(path), None)
    with pytest.raises(SusxError, match="needs --dataset"):
        questions.resolve_questions("dataset", None)
    with pytest.raises(SusxError, match="unknown question set"):
        questions.resolve_questions("nonsense", None)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("A cat is a small furry animal. It purrs.", "A cat is a small furry animal."),
        ("  a   cat\n has\twhiskers  ", "a cat has whiskers."),
        ("It weighs 3.5 kg on average. More.", "It weighs 3.5 kg on average."),
        ('"A bright orange goldfish in a bowl."', "A bright orange goldfish in a bowl."),
        ("Sure! Here is a caption:\n\nA grey owl on a branch", "A grey owl on a branch."),
        ("1. **An owl** has large eyes.\n2. Feathers.", "An owl has large eyes."),
        ("<p>A striped <b>zebra</b></p>", "A striped zebra."),
        ("Is it a cat?", "Is it a cat?"),
        ("A cat...", "A cat."),
        ("", None),
        ("   \n ", None),
        ("```\n```", None),
        ("** -- **", None),
        ("Cat.", None),
        (".", None),
    ],
)
def test_clean_answer(raw, expected):
    assert cupl.clean_answer(raw)[0] == expected


def test_clean_answers_counts_what_it_drops():
    kept, dropped = cupl.clean_answers(
        ["A black cat sits.", "A black cat sits", "", "ok", "**", "A cat runs."]
    )
    assert kept == ["A black cat sits.", "A cat runs."]
    assert dropped == {"empty": 1, "markup": 1, "short": 1, "duplicate": 1}


def test_retry_policy_is_deterministic_and_honours_retry_after():
    policy = RetryPolicy(retries=3, base=1.0, cap=4.0)
    assert policy.delay(0, "k") == policy.delay(0, "k")
    assert 1.0 <= policy.delay(0, "k") < 1.5 and 4.0 <= policy.delay(5, "k") < 6.0
    assert policy.delay(2, "k", retry_after=7.0) == 7.0
    assert RetryPolicy(max_retry_after=2.0).delay(0, retry_after=100.0) == 2.0
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({}) is None


def test_with_retries_sleeps_then_gives_up():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise LLMTransient("HTTP 429", status=429, retry_after=0.5 if len(calls) == 1 else None)
        return "ok"

    policy = RetryPolicy(retries=4, base=0.1, cap=1.0)
    assert with_retries(flaky, policy, key="a", sleep=sleeps.append) == "ok"
    assert sleeps[0] == 0.5 and 0.2 <= sleeps[1] < 0.3 and len(calls) == 3

    def always():
        raise LLMTransient("HTTP 503", status=503)

    sleeps.clear()
    with pytest.raises(LLMTransient):
        with_retries(always, RetryPolicy(retries=2, base=0.1), sleep=sleeps.append)
    assert len(sleeps) == 2


# ---------------------------------------------------------------------------------------------------
# Generation through the CLI


@pytest.mark.slow
def test_generate_writes_sentences_and_provenance(llm_server, tmp_path):
    result = invoke(*llm_args(llm_server, tmp_path))
    out = tmp_path / "prompts.json"
    assert result.stdout.strip() == str(out)
    # 3 classes x 5 generic questions x 2 samples
    assert len(llm_server.requests) == 30
    prompts = llm_server.prompts()
    assert "Describe what an owl looks like" in prompts and "Describe what an eagle looks like" in prompts
    first = llm_server.requests[0]
    assert first["temperature"] == 0.99 and first["max_tokens"] == 50 and isinstance(first["seed"], int)
    assert first["messages"][0]["role"] == "system"
    data = json.loads(out.read_text())
    assert data["default_pool"] == "combined"
    owl = data["entries"][1]
    assert len(owl["cupl"]) == 10 and all(s.endswith(".") and "second sentence" not in s for s in owl["cupl"])
    assert owl["cupl"][0].startswith("Describe what an owl looks like shows detail")
    llm = data["llm"]
    assert llm["model"] == MODEL and llm["base_url"] == llm_server.base_url and llm["date"]
    assert llm["requests_made"] == 30 and llm["cache_hits"] == 0 and llm["new_answers"] == 30
    assert llm["sentences_per_class"] == {"cat": 10, "owl": 10, "eagle": 10}
    assert data["options"]["llm"]["questions"] == questions.GENERIC
    assert data["options"]["llm"]["temperature"] == 0.99
    assert len(cache_lines(tmp_path / "prompts.llm-cache.jsonl")) == 30


@pytest.mark.slow
def test_dataset_questions_and_no_system_message(llm_server, tmp_path):
    invoke(
        "prompts",
        "-d",
        "cifar10",
        "-o",
        tmp_path / "c10.json",
        "--llm",
        "--llm-base-url",
        llm_server.base_url,
        "--llm-model",
        MODEL,
        "--llm-samples",
        1,
        "--llm-system",
        "",
        "--llm-concurrency",
        4,
    )
    assert len(llm_server.requests) == 10 * len(registry.get("cifar10").cupl_questions)
    assert "How can you identify an airplane?" in llm_server.prompts()
    assert all(len(r["messages"]) == 1 for r in llm_server.requests)
    data = json.loads((tmp_path / "c10.json").read_text())
    assert (
        data["options"]["llm"]["questions_source"] == "dataset:cifar10"
        and data["options"]["llm"]["system"] is None
    )


@pytest.mark.slow
def test_switches_to_max_completion_tokens_when_the_model_wants_it(llm_server, tmp_path):
    def newer_model(prompt, body):
        if "max_tokens" in body:
            err = {
                "error": {
                    "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                    "Use 'max_completion_tokens' instead.",
                    "code": "unsupported_parameter",
                }
            }
            return 400, {"Content-Type": "application/json"}, json.dumps(err).encode(), 0
        return None

    llm_server.rules.append(newer_model)
    invoke(*llm_args(llm_server, tmp_path, samples=1))
    assert len(llm_server.requests) == 16 and llm_server.requests[-1]["max_completion_tokens"] == 50


@pytest.mark.slow
def test_other_bad_requests_are_one_line_errors(llm_server, tmp_path):
    err = {"error": {"message": "temperature must be 1 for this model"}}
    llm_server.rules.append(
        lambda p, b: (400, {"Content-Type": "application/json"}, json.dumps(err).encode(), 0)
    )
    line = _one_error_line(invoke(*llm_args(llm_server, tmp_path), expect=2))
    assert "rejected the request (HTTP 400: temperature must be 1 for this model)" in line


@pytest.mark.slow
def test_rerun_and_overwrite_make_no_requests(llm_server, tmp_path):
    invoke(*llm_args(llm_server, tmp_path))
    assert len(llm_server.requests) == 30
    result = invoke(*llm_args(llm_server, tmp_path))
    assert "up to date" in flat(result.stderr)
    invoke(*llm_args(llm_server, tmp_path, "--overwrite"))
    assert len(llm_server.requests) == 30
    llm = json.loads((tmp_path / "prompts.json").read_text())["llm"]
    assert llm["requests_made"] == 0 and llm["cache_hits"] == 30
    # the cache is shared by key: another output with more samples asks only for the new ones
    invoke(
        *llm_args(
            llm_server,
            tmp_path,
            "--llm-cache",
            tmp_path / "prompts.llm-cache.jsonl",
            samples=3,
            out="p3.json",
        )
    )
    assert len(llm_server.requests) == 45


@pytest.mark.slow
def test_another_model_endpoint_or_sampling_option_asks_again(llm_server, tmp_path):
    """The cache key holds everything that changes an answer: a shared cache is no reason to reuse it."""
    cache = ["--llm-cache", tmp_path / "shared.jsonl"]
    invoke(*llm_args(llm_server, tmp_path, *cache, samples=1, out="a.json"))
    assert len(llm_server.requests) == 15
    llm_server.models.add("other-model")
    args = llm_args(llm_server, tmp_path, *cache, samples=1, out="b.json")
    args[args.index("--llm-model") + 1] = "other-model"
    invoke(*args)
    assert len(llm_server.requests) == 30 and {r["model"] for r in llm_server.requests[15:]} == {
        "other-model"
    }
    args = llm_args(llm_server, tmp_path, *cache, samples=1, out="c.json")
    args[args.index("--llm-base-url") + 1] = llm_server.base_url.replace("127.0.0.1", "localhost")
    invoke(*args)  # the same server under another name is another endpoint
    assert len(llm_server.requests) == 45
    invoke(*llm_args(llm_server, tmp_path, *cache, "--llm-temperature", 0.5, samples=1, out="d.json"))
    assert len(llm_server.requests) == 60 and llm_server.requests[-1]["temperature"] == 0.5
    invoke(*llm_args(llm_server, tmp_path, *cache, samples=1, out="e.json"))  # all four are cached now
    assert len(llm_server.requests) == 60


@pytest.mark.slow
def test_budget_stops_and_a_rerun_resumes(llm_server, tmp_path):
    result = invoke(*llm_args(llm_server, tmp_path, "--max-requests", 12), expect=3)
    err = flat(result.stderr)
    assert "stopped at --max-requests 12: 18 request(s) left undone" in err and "prompts not written" in err
    assert not (tmp_path / "prompts.json").exists()
    assert len(llm_server.requests) == 12 and len(cache_lines(tmp_path / "prompts.llm-cache.jsonl")) == 12
    invoke(*llm_args(llm_server, tmp_path))
    assert len(llm_server.requests) == 30
    assert len({(r["messages"][-1]["content"], r["seed"]) for r in llm_server.requests}) == 30
    llm = json.loads((tmp_path / "prompts.json").read_text())["llm"]
    assert llm["cache_hits"] == 12 and llm["requests_made"] == 18


@pytest.mark.slow
def test_budget_zero_uses_only_the_cache(llm_server, tmp_path):
    result = invoke(*llm_args(llm_server, tmp_path, "--max-requests", 0), expect=3)
    assert "30 request(s) left undone" in flat(result.stderr) and llm_server.requests == []


@pytest.mark.slow
def test_interrupted_cache_line_is_ignored_and_redone(llm_server, tmp_path):
    invoke(*llm_args(llm_server, tmp_path, "--max-requests", 5), expect=3)
    cache_path = tmp_path / "prompts.llm-cache.jsonl"
    cache_path.write_bytes(cache_path.read_bytes() + b'{"key": "abc", "ans')  # a write cut by a kill
    result = invoke(*llm_args(llm_server, tmp_path))
    assert "ignored 1 unreadable line" in flat(result.stderr)
    assert len(llm_server.requests) == 30 and len(cache_lines_lenient(cache_path)) == 30


def cache_lines_lenient(path: Path) -> list[dict]:
    rows = []
    for ln in path.read_text().splitlines()[1:]:  # after the header line
        try:
            rows.append(json.loads(ln))
        except ValueError:
            pass
    return rows


@pytest.mark.slow
def test_retries_on_429_and_500(llm_server, tmp_path):
    seen: dict[str, int] = {}

    def flaky(prompt, body):
        key = f"{prompt}|{body['seed']}"
        with llm_server.lock:
            seen[key] = seen.get(key, 0) + 1
            n = seen[key]
        if "owl" in prompt and n == 1:
            return (
                429,
                {"Retry-After": "0", "Content-Type": "application/json"},
                b'{"error": {"message": "slow down"}}',
                0,
            )
        if "eagle" in prompt and n <= 2:
            return 500, {"Content-Type": "application/json"}, b'{"error": {"message": "boom"}}', 0
        return None

    llm_server.rules.append(flaky)
    invoke(*llm_args(llm_server, tmp_path))
    assert len(llm_server.requests) == 30 + 10 + 20
    llm = json.loads((tmp_path / "prompts.json").read_text())["llm"]
    assert llm["retries"] == 30 and llm["requests_made"] == 60
    assert llm["sentences_per_class"] == {"cat": 10, "owl": 10, "eagle": 10}


@pytest.mark.slow
def test_persistent_failures_are_reported_and_retried_on_rerun(llm_server, tmp_path):
    broken = {"on": True}

    def down(prompt, body):
        if broken["on"] and "eagle" in prompt:
            return 503, {"Content-Type": "application/json"}, b'{"error": {"message": "overloaded"}}', 0
        return None

    llm_server.rules.append(down)
    result = invoke(*llm_args(llm_server, tmp_path, "--llm-retries", 1), expect=3)
    err = flat(result.stderr)
    assert "10 LLM request(s) failed after 1 retries" in err and "HTTP 503" in err and "overloaded" in err
    assert not (tmp_path / "prompts.json").exists()
    assert len(cache_lines(tmp_path / "prompts.llm-cache.jsonl")) == 20
    before = len(llm_server.requests)
    broken["on"] = False
    invoke(*llm_args(llm_server, tmp_path))
    assert len(llm_server.requests) - before == 10
    assert all("eagle" in p for p in llm_server.prompts()[before:])


@pytest.mark.slow
def test_slow_answer_times_out_and_is_retried(llm_server, tmp_path):
    slow = {"left": 1}

    def once_slow(prompt, body):
        with llm_server.lock:
            if slow["left"]:
                slow["left"] -= 1
                return 200, {"Content-Type": "application/json"}, b"{}", 1.5
        return None

    llm_server.rules.append(once_slow)
    args = llm_args(llm_server, tmp_path)
    args[args.index("--llm-timeout") + 1] = 0.4
    invoke(*args)
    llm = json.loads((tmp_path / "prompts.json").read_text())["llm"]
    assert llm["retries"] == 1 and llm["requests_made"] == 31 and llm["new_answers"] == 30


@pytest.mark.slow
def test_cleaning_and_a_class_without_usable_sentences(llm_server, tmp_path):
    def answer(prompt, body):
        if "owl" in prompt:
            return ["", "**", "ok.", "```\n```"][body["seed"] % 4]
        return FakeLLM.default_answer(prompt, body)

    llm_server.answer = answer
    result = invoke(*llm_args(llm_server, tmp_path))
    assert "no usable sentence for 1 class(es): 'owl'" in flat(result.stderr)
    data = json.loads((tmp_path / "prompts.json").read_text())
    assert data["entries"][1]["cupl"] == [] and data["llm"]["classes_without_sentences"] == ["owl"]
    assert sum(data["llm"]["dropped"].values()) == 10
    assert len(data["entries"][0]["cupl"]) == 10


# ---------------------------------------------------------------------------------------------------
# Errors: one line, one request


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_unreachable_endpoint(tmp_path):
    args = [
        "prompts",
        "-c",
        class_file(tmp_path),
        "-o",
        tmp_path / "p.json",
        "--llm",
        "--llm-model",
        MODEL,
        "--llm-base-url",
        f"http://127.0.0.1:{_free_port()}/v1",
        "--llm-timeout",
        2,
    ]
    line = _one_error_line(invoke(*args, expect=2))
    assert "cannot reach the LLM endpoint" in line and "--llm-base-url" in line


@pytest.mark.slow
def test_wrong_key(llm_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-wrong")
    line = _one_error_line(invoke(*llm_args(llm_server, tmp_path, "--llm-key-env", "MY_KEY"), expect=2))
    assert "refused the API key (HTTP 401: Incorrect API key provided)" in line and "$MY_KEY" in line
    assert len(llm_server.requests) == 1 and llm_server.requests[0]["auth"] == "Bearer sk-wrong"


@pytest.mark.slow
def test_unknown_model(llm_server, tmp_path):
    args = llm_args(llm_server, tmp_path)
    args[args.index("--llm-model") + 1] = "no-such-model"
    line = _one_error_line(invoke(*args, expect=2))
    assert "has no model 'no-such-model'" in line and "HTTP 404" in line
    assert len(llm_server.requests) == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "body, ctype, words",
    [
        (b"<html>proxy error</html>", "text/html", "not JSON"),
        (b'{"choices": [tru', "application/json", "not JSON"),
        (b'{"result": "hello"}', "application/json", "without choices"),
    ],
)
def test_malformed_answers(llm_server, tmp_path, body, ctype, words):
    llm_server.rules.append(lambda prompt, b: (200, {"Content-Type": ctype}, body, 0))
    line = _one_error_line(invoke(*llm_args(llm_server, tmp_path), expect=2))
    assert words in line and "not a chat completion" in line
    assert len(llm_server.requests) == 1


def test_llm_option_checks(tmp_path):
    line = _one_error_line(invoke("prompts", "-c", class_file(tmp_path), "--llm-model", "x", expect=2))
    assert "--llm-model is given without --llm" in line
    line = _one_error_line(invoke("prompts", "-c", class_file(tmp_path), "--llm", expect=2))
    assert "--llm needs --llm-model" in line
    line = _one_error_line(
        invoke(
            "prompts", "-c", class_file(tmp_path), "--llm", "--llm-model", "m", "--llm-samples", 0, expect=2
        )
    )
    assert "--llm-samples must be at least 1" in line


def test_generate_with_a_fake_client_and_recorded_sleeps(tmp_path):
    """The stage logic without HTTP: deterministic waits, budget, and cache reuse."""
    from susx_cli.adapters.llm import Completion

    class Client:
        def __init__(self):
            self.calls = 0

        def complete(self, messages, *, temperature, max_tokens, seed=None):
            self.calls += 1
            if self.calls == 2:
                raise LLMTransient("HTTP 429", status=429, retry_after=0.25)
            return Completion(f"{messages[-1]['content']} number {seed}.")

    sleeps: list[float] = []
    settings = cupl.LLMSettings(
        model=MODEL,
        base_url="http://127.0.0.1:1/v1",
        samples=2,
        concurrency=1,
        questions="generic",
        sleep=sleeps.append,
    )
    plan = cupl.prepare(settings, None, tmp_path / "p.json")
    client = Client()
    gen = cupl.generate(plan, ["cat"], client=client)
    assert sleeps == [0.25] and client.calls == 11 and len(gen.sentences["cat"]) == 10
    again = cupl.generate(plan, ["cat"], client=client)
    assert client.calls == 11 and again.sentences == gen.sentences and again.record["cache_hits"] == 10


def test_budget_stop_is_an_incomplete_run_error_and_the_cache_survives_a_torn_line(tmp_path):
    """Python callers get IncompleteRunError (a SusxError, exit code 3); a torn cache tail is cut before appending."""
    from susx_cli.adapters.llm import Completion
    from susx_cli.errors import SusxError

    class Client:
        def complete(self, messages, *, temperature, max_tokens, seed=None):
            return Completion(f"{messages[-1]['content']} number {seed}.")

    settings = cupl.LLMSettings(
        model=MODEL,
        base_url="http://127.0.0.1:1/v1",
        samples=2,
        concurrency=1,
        questions="generic",
        max_requests=3,
    )
    plan = cupl.prepare(settings, None, tmp_path / "p.json")
    with pytest.raises(cupl.IncompleteRunError) as info:
        cupl.generate(plan, ["cat"], client=Client())
    assert (
        isinstance(info.value, SusxError)
        and info.value.exit_code == 3
        and "--max-requests 3" in info.value.message
    )
    with open(plan.cache_path, "ab") as f:
        f.write(b'{"key": "torn')
    settings.max_requests = None
    gen = cupl.generate(plan, ["cat"], client=Client())
    lines = plan.cache_path.read_bytes().splitlines()[1:]  # after the header line
    assert len(gen.sentences["cat"]) == 10 and len(lines) == 10 and all(json.loads(ln)["key"] for ln in lines)


# ---------------------------------------------------------------------------------------------------
# CuPL sentence files by URL


@pytest.mark.slow
def test_cupl_url_with_checksum_is_fetched_once(llm_server, tmp_path):
    data = json.dumps(
        {"cat": ["A cat with whiskers."], "owl": ["An owl at night."], "heron": ["A heron."]}
    ).encode()
    llm_server.files["cupl.json"] = data
    digest = hashlib.sha256(data).hexdigest()
    url = f"{llm_server.url}/files/cupl.json"
    result = invoke(
        "prompts",
        "-c",
        class_file(tmp_path),
        "-o",
        tmp_path / "p.json",
        "--cupl",
        url,
        "--cupl-sha256",
        digest,
    )
    err = flat(result.stderr)
    assert "no sentences for 1 class(es): 'eagle'" in err and "match no class: 'heron'" in err
    out = json.loads((tmp_path / "p.json").read_text())
    assert out["entries"][0]["cupl"] == ["A cat with whiskers."]
    assert out["inputs"][-1]["path"] == url and out["inputs"][-1]["sha256"] == digest
    cached = tmp_path / "user-cache" / "downloads" / f"{digest}.json"
    assert cached.is_file()
    del llm_server.files["cupl.json"]  # the cached copy is used; the server is not asked again
    invoke(
        "prompts",
        "-c",
        class_file(tmp_path),
        "-o",
        tmp_path / "p2.json",
        "--cupl",
        url,
        "--cupl-sha256",
        digest.upper(),
    )
    assert llm_server.file_gets == 1


@pytest.mark.slow
def test_cupl_url_bad_checksum_keeps_nothing(llm_server, tmp_path):
    llm_server.files["cupl.json"] = b'{"cat": ["A cat."]}'
    url = f"{llm_server.url}/files/cupl.json"
    line = _one_error_line(
        invoke(
            "prompts",
            "-c",
            class_file(tmp_path),
            "-o",
            tmp_path / "p.json",
            "--cupl",
            url,
            "--cupl-sha256",
            "0" * 64,
            expect=2,
        )
    )
    assert "checksum mismatch" in line and "expected sha256 " + "0" * 64 in line
    assert not (tmp_path / "p.json").exists()
    assert not any(p.is_file() for p in (tmp_path / "user-cache").rglob("*"))  # not even a partial file


@pytest.mark.slow
def test_cupl_url_errors(llm_server, tmp_path):
    base = ["prompts", "-c", class_file(tmp_path), "-o", tmp_path / "p.json"]
    line = _one_error_line(invoke(*base, "--cupl", "ftp://example.com/x.json", expect=2))
    assert "only http(s) URLs" in line
    line = _one_error_line(invoke(*base, "--cupl", f"{llm_server.url}/files/missing.json", expect=2))
    assert "HTTP 404" in line
    line = _one_error_line(
        invoke(*base, "--cupl", f"{llm_server.url}/files/a.json", "--cupl-sha256", "abc", expect=2)
    )
    assert "not a sha256 checksum" in line
    line = _one_error_line(invoke(*base, "--cupl", "local.json", "--cupl-sha256", "0" * 64, expect=2))
    assert "1 --cupl-sha256 value(s) for 0 --cupl URL(s)" in line


@pytest.mark.slow
def test_cupl_url_without_checksum_warns_with_the_hash(llm_server, tmp_path):
    data = b'{"cat": ["A cat."], "owl": ["An owl."], "eagle": ["An eagle."]}'
    llm_server.files["c.json"] = data
    result = invoke(
        "prompts",
        "-c",
        class_file(tmp_path),
        "-o",
        tmp_path / "p.json",
        "--cupl",
        f"{llm_server.url}/files/c.json",
    )
    assert hashlib.sha256(data).hexdigest() in flat(result.stderr)
    assert fetch.cache_dir() == tmp_path / "user-cache"


@pytest.mark.slow
def test_cupl_url_over_the_size_cap_is_refused_and_nothing_is_cached(tmp_path):
    from tests.loopback import Server

    server = Server()
    try:
        with pytest.raises(SusxError, match="larger than 1048576 bytes"):
            fetch.fetch_url(f"{server.url}/big-stream", max_bytes=1 << 20)
    finally:
        server.close()
    assert not any(p.is_file() for p in (tmp_path / "user-cache").rglob("*"))
    # by default a CuPL file is capped well below a 128 MiB body
    assert fetch.fetch_url.__kwdefaults__["max_bytes"] == clients.CUPL_FILE.max_bytes < 128 << 20
