"""Support-image influence: the vectorised leave-one-out deltas against a brute-force loop that rebuilds
the cache without each image, on random tensors."""

from __future__ import annotations

import pytest
import torch

from susx_cli.method import influence, tipx


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _tensors(seed: int, N: int = 24, C: int = 4, D: int = 8):
    g = torch.Generator().manual_seed(seed)
    W = _unit(torch.randn(C, D, generator=g, dtype=torch.float64))
    y = torch.arange(N) % C
    y = y[torch.randperm(N, generator=g)]
    # Images near their class's text, with enough noise that some are closer to another class.
    F = _unit(W[y] + 2.0 * torch.randn(N, D, generator=g, dtype=torch.float64))
    return F, y, W


def _loo_right(F, y, W, i: int, cache: list[int], pair, normalize: bool, **zs) -> bool:
    """Query i against the cache of images ``cache`` (i excluded), one image at a time."""
    C = W.shape[0]
    P = torch.zeros(C, dtype=torch.float64)
    n = torch.zeros(C, dtype=torch.float64)
    for k in cache:
        P[y[k]] += pair(i, k)
        n[y[k]] += 1
    logits = tipx.zero_shot_logits(F[i : i + 1], W, **zs)[0] + (P / n.clamp_min(1) if normalize else P)
    return int(torch.argmax(logits)) == int(y[i])  # torch.argmax: the first of equal maxima


def _brute_force(F, y, W, pair, normalize: bool, **zs) -> tuple[torch.Tensor, torch.Tensor]:
    N = F.shape[0]
    correct = torch.tensor(
        [_loo_right(F, y, W, i, [k for k in range(N) if k != i], pair, normalize, **zs) for i in range(N)]
    )
    delta = torch.zeros(N, dtype=torch.float64)
    for j in range(N):
        peers = [i for i in range(N) if y[i] == y[j] and i != j]
        for i in peers:
            kept = [k for k in range(N) if k not in (i, j)]
            delta[j] += float(_loo_right(F, y, W, i, kept, pair, normalize, **zs)) - float(correct[i])
        delta[j] /= max(len(peers), 1)
    return delta, correct


@pytest.mark.parametrize("seed", [0, 2])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("tip_x", [False, True])
def test_influence_equals_the_brute_force_loop(seed, normalize, tip_x):
    F, y, W = _tensors(seed)
    alpha, beta, gamma, tau = 3.0, 5.0, (2.0 if tip_x else None), 0.5
    A = tipx.affinity(F @ F.T, beta)
    if tip_x:
        # The rescale keeps the full support set's leave-one-out ranges (the module's stated definition).
        a, b = tipx.kl_sums(F, F, y, W, tau=tau, exclude_self=True).rescale()
        K = tipx.kl_matrix(tipx.signatures(F, W, tau), tipx.signatures(F, W, tau))

    def pair(i, k):
        return alpha * A[i, k] - (gamma * (a * K[i, k] + b) if tip_x else 0.0)

    zs = {"logit_scale": 5.0}
    want_delta, want_correct = _brute_force(F, y, W, pair, normalize, **zs)
    got = influence.support_influence(
        F, y, W, alpha=alpha, beta=beta, gamma=gamma, tau=tau, normalize=normalize, rows=7, **zs
    )
    assert torch.equal(got.correct, want_correct)
    assert torch.allclose(got.delta, want_delta, atol=1e-12)
    assert (want_delta != 0).any()  # the random set has images that change their class's accuracy


def test_tip_adapter_influence_matches_the_methods_own_logits():
    """Without the KL term nothing is held fixed: each delta equals re-running tipx.logits without j."""
    F, y, W = _tensors(5, N=15, C=3)
    opts = {"alpha": 4.0, "beta": 3.0, "logit_scale": 20.0}
    N = F.shape[0]

    def right(i, cache):
        logits = tipx.logits(F[i : i + 1], W, F[cache], y[cache], **opts)
        return float(int(torch.argmax(logits[0])) == int(y[i]))

    got = influence.support_influence(F, y, W, **opts)
    for j in range(N):
        peers = [i for i in range(N) if y[i] == y[j] and i != j]
        change = sum(
            right(i, [k for k in range(N) if k not in (i, j)]) - right(i, [k for k in range(N) if k != i])
            for i in peers
        )
        assert got.delta[j] == pytest.approx(change / len(peers), abs=1e-12)
    assert got.peers.tolist() == [int((y == y[j]).sum()) - 1 for j in range(N)]


def test_an_image_alone_in_its_class_has_no_influence():
    F, y, W = _tensors(3, N=9, C=3)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2])
    got = influence.support_influence(F, y, W, alpha=2.0, beta=2.0)
    assert got.delta[8] == 0 and got.peers[8] == 0


def test_class_members_pads_with_minus_one():
    members = influence.class_members(torch.tensor([2, 0, 2, 2]), 3)
    assert members.tolist() == [[1, -1, -1], [-1, -1, -1], [0, 2, 3]]


# ------------------------------------------------------------------ susx inspect --influence


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from tests.helpers import build_method_workspace

    return build_method_workspace(tmp_path_factory.mktemp("influence"), ["zebra", "apple", "kiwi"], shots=4)


def test_inspect_influence_ranks_every_support_image(workspace, monkeypatch):
    import json

    from susx_cli.artifacts import hdf5
    from tests.helpers import invoke

    monkeypatch.chdir(workspace)
    invoke(
        "calibrate", "text.h5", "sup.h5", "--mode", "fixed", "--method", "tip-adapter",
        "--alpha", "30", "--beta", "8", "-o", "cal.json",
    )  # fmt: skip
    out = json.loads(
        invoke(
            "inspect", "sup.h5", "--influence", "--text", "text.h5", "--calibration", "cal.json", "--json"
        ).stdout
    )
    assert (out["method"], out["hyperparameters"]) == ("tip-adapter", {"alpha": 30.0, "beta": 8.0})
    sup, text = hdf5.read_features("sup.h5"), hdf5.read_text_classifier("text.h5")
    want = influence.support_influence(
        torch.from_numpy(sup.features).double(),
        torch.from_numpy(sup.labels),
        torch.from_numpy(text.weights).double(),
        alpha=30.0,
        beta=8.0,
        logit_scale=out["settings"]["logit_scale"],
    )
    got = {r["key"]: r for r in out["images"]}
    assert sorted(got) == sorted(sup.keys)  # every image, once
    for j, key in enumerate(sup.keys):
        assert got[key]["delta"] == pytest.approx(float(want.delta[j]))
        assert got[key]["class"] == sup.classes[sup.labels[j]] and got[key]["peers"] == 3
    deltas = [r["delta"] for r in out["images"]]
    assert deltas == sorted(deltas, reverse=True)  # worst first
    assert out["leave_one_out_top1"] == pytest.approx(float(want.correct.double().mean()))
    # Plain stdout: change, class, key per line, in the same order (its third column is an --exclude file).
    lines = invoke(
        "inspect", "sup.h5", "--influence", "--text", "text.h5", "--calibration", "cal.json"
    ).stdout
    assert [line.split("\t")[2] for line in lines.splitlines()] == [r["key"] for r in out["images"]]


def test_inspect_influence_draws_the_worst_images_with_their_keys(workspace, monkeypatch):
    import json

    from tests.helpers import invoke

    monkeypatch.chdir(workspace)
    args = (
        "inspect",
        "sup.h5",
        "--influence",
        "--text",
        "text.h5",
        "--contact-sheet",
        "worst.png",
        "--worst",
        "5",
    )
    assert invoke(*args).stdout.splitlines() == ["worst.png"]
    out = json.loads(invoke(*args, "--json").stdout)
    assert out["from"] == "TIP-X defaults" and set(out["hyperparameters"]) == {"alpha", "beta", "gamma"}
    (page,) = out["contact_sheet"]["pages"]
    assert [k for row in page["keys"] for k in row] == [r["key"] for r in out["images"][:5]]
    assert (workspace / "worst.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The folder the features were embedded from is found through their provenance; a moved one is named.
    (workspace / "sup").rename(workspace / "moved")
    try:
        r = invoke(*args, expect=2)
        assert "not reachable" in r.stderr and "--support-folder" in r.stderr
        invoke(*args, "--support-folder", "moved")
    finally:
        (workspace / "moved").rename(workspace / "sup")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--influence",), "--influence needs the text classifier"),
        (("--text", "text.h5"), "add --influence"),
        (("--influence", "--text", "text.h5", "--worst", "0"), "--worst must be at least 1"),
        (("--influence", "--text", "text.h5", "--calibration", "gda.json"), "calibrates GDA"),
    ],
)
def test_inspect_influence_refuses_bad_options(workspace, monkeypatch, args, needle):
    from tests.helpers import invoke

    monkeypatch.chdir(workspace)
    if "gda.json" in args:
        invoke(
            "calibrate",
            "text.h5",
            "sup.h5",
            "--mode",
            "fixed",
            "--method",
            "gda",
            "--gda-alpha",
            "1",
            "-o",
            "gda.json",
        )
    r = invoke("inspect", "sup.h5", *args, expect=2)
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_embed_leaves_out_the_listed_keys_and_records_them(workspace, monkeypatch):
    import json

    from susx_cli.artifacts import hdf5
    from tests.helpers import TINY, invoke

    monkeypatch.chdir(workspace)
    ranked = invoke("inspect", "sup.h5", "--influence", "--text", "text.h5").stdout.splitlines()
    # The ranked lines themselves are a valid --exclude file (the key is the last tab-separated field).
    (workspace / "worst.txt").write_text("# the two worst\n" + "\n".join(ranked[:2]) + "\n")
    invoke("embed", "sup", "-o", "kept.h5", "--exclude", "worst.txt", *TINY)
    dropped = [line.split("\t")[2] for line in ranked[:2]]
    kept, every = hdf5.read_features("kept.h5"), hdf5.read_features("sup.h5")
    assert kept.keys == [k for k in every.keys if k not in dropped]
    assert kept.provenance["options"]["exclude"] == sorted(dropped)
    # The rows left are the same embeddings as before (leaving images out changes no other row).
    rows = [every.keys.index(k) for k in kept.keys]
    assert json.dumps(kept.features.tolist()) == json.dumps(every.features[rows].tolist())
    # Another list is another set of options: the output is not silently reused or replaced.
    (workspace / "other.txt").write_text(dropped[0] + "\n")
    r = invoke("embed", "sup", "-o", "kept.h5", "--exclude", "other.txt", *TINY, expect=2)
    assert "other inputs or options" in r.stderr
    (workspace / "typo.txt").write_text("0000_zebra/nope.png\n")
    r = invoke("embed", "sup", "-o", "typo.h5", "--exclude", "typo.txt", *TINY, expect=2)
    assert "name no image" in r.stderr and not (workspace / "typo.h5").exists()


def test_curate_leaves_out_the_listed_keys_and_records_them(workspace, monkeypatch):
    import json

    from tests.helpers import invoke

    monkeypatch.chdir(workspace)
    every = [
        json.loads(line)["path"] for line in (workspace / "sup" / "manifest.jsonl").read_text().splitlines()
    ]
    (workspace / "drop.txt").write_text(
        f"{every[1]}\n{every[5].rsplit('.', 1)[0]}\n"
    )  # with or without suffix
    invoke("curate", "p.json", "-o", "fewer", "--images", "shots", "--exclude", "drop.txt")
    rows = [json.loads(line) for line in (workspace / "fewer" / "manifest.jsonl").read_text().splitlines()]
    assert [r["path"] for r in rows] == [
        p for i, p in enumerate(every) if i not in (1, 5)
    ]  # others keep their keys
    described = json.loads(invoke("inspect", "fewer", "--json").stdout)
    assert described["provenance"]["options"]["exclude"] == [
        p.rsplit(".", 1)[0] for p in (every[1], every[5])
    ]
    (workspace / "other.txt").write_text(f"{every[2]}\n")
    r = invoke("curate", "p.json", "-o", "fewer", "--images", "shots", "--exclude", "other.txt", expect=2)
    assert "other inputs or options" in r.stderr
    (workspace / "typo.txt").write_text("0000_zebra/nope\n")
    r = invoke("curate", "p.json", "-o", "typo", "--images", "shots", "--exclude", "typo.txt", expect=2)
    assert "name no image" in r.stderr and not (workspace / "typo").exists()


def test_inspect_influence_sheet_goes_through_the_guarded_writer(workspace, monkeypatch):
    """The worst images' sheet never replaces an input of the command or a file susx did not write."""
    from tests.helpers import invoke

    monkeypatch.chdir(workspace)
    base = ("inspect", "sup.h5", "--influence", "--text", "text.h5", "--contact-sheet")
    text = (workspace / "text.h5").read_bytes()
    bad = invoke(*base, "text.h5", expect=2)
    assert "also an input" in bad.stderr and (workspace / "text.h5").read_bytes() == text
    (workspace / "notes.png").write_text("mine")
    bad = invoke(*base, "notes.png", expect=2)
    assert "not a file susx wrote" in bad.stderr and (workspace / "notes.png").read_text() == "mine"
