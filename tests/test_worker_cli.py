"""`python -m worker run` end to end on real images and weights, its settings, categories and errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch
from fixtures import clean_env

from unitscope.data.runs import runs
from unitscope.data.source import ConnectionSource
from unitscope.flags import SettingsError, flag_name, from_flags
from worker import cli
from worker.categories import (
    BUILTIN_SYNSETS,
    CategoryError,
    builtin_category,
    load_categories,
    load_imagenet_classes,
    parse_category_arg,
)
from worker.models.layers import GOOGLENET_LAYERS
from worker.settings import WorkerSettings

REPO = Path(__file__).resolve().parent.parent
LAYERS = ("conv1", "mixed3a")
LIMIT = 24


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, imagenet_sample, bvlc_weights) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A small real run: 24 sample images spread over the folder, two layers, through the CLI."""
    db = tmp_path_factory.mktemp("cli") / "real.duckdb"
    cmd = [sys.executable, "-m", "worker", "run", "--images", str(imagenet_sample), "--db", str(db),
           "--model", "bvlc-googlenet", "--weights", str(bvlc_weights), "--layers", *LAYERS,
           "--limit", str(LIMIT), "--batch-size", "8", "--workers", "2"]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=300)
    return db, result


def test_real_run_publishes_a_complete_run(real_run, imagenet_sample, bvlc_weights):
    db, result = real_run
    assert result.returncode == 0, result.stderr
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith(f"run 1 published to {db}: {LIMIT} images, 0 skipped;")
    assert "images/s" in summary and "bytes per stored value" in summary
    from worker.models import get_model

    model = get_model("bvlc-googlenet", weights=bvlc_weights)
    with duckdb.connect(str(db), read_only=True) as con:
        (row,) = con.execute("SELECT * FROM runs").fetchall()
        run = dict(zip([d[0] for d in con.description], row, strict=True))
        assert run["status"] == "complete" and run["finished_at"] >= run["started_at"]
        assert (run["model"], run["weights_sha256"], run["n_files"]) == ("bvlc-googlenet", model.weights_sha256, LIMIT)
        assert json.loads(run["preprocessing"]) == model.preprocessing
        assert run["images_root"] == str(imagenet_sample.resolve())
        assert con.execute("SELECT layer, position, units, module FROM layers ORDER BY position").fetchall() == [
            ("conv1", 0, 64, "conv1/7x7_s2"), ("mixed3a", 3, 256, "inception_3a/output")
        ]  # fmt: skip
        branches = con.execute(
            "SELECT branch, count(*), min(unit), max(unit) FROM units WHERE layer = 'mixed3a' GROUP BY 1 ORDER BY 3"
        ).fetchall()
        assert branches == [("1x1", 64, 0, 63), ("3x3", 128, 64, 191), ("5x5", 32, 192, 223),
                            ("pool_proj", 32, 224, 255)]  # fmt: skip
        dog = con.execute("SELECT wnid FROM categories WHERE category = 'dog' ORDER BY 1").fetchall()
        assert tuple(w for (w,) in dog) == builtin_category("dog").wnids
        images = con.execute(
            "SELECT image_id, path, wnid, class_index, class_name, width, height, mode FROM images ORDER BY 1"
        ).fetchall()
        n_responses, n_distinct = con.execute(
            "SELECT count(*), count(DISTINCT (layer, unit, image_id)) FROM responses"
        ).fetchone()
        scores = con.execute(
            "SELECT layer, category, count(*), count(si), "
            "(SELECT count(DISTINCT unit) FROM unit_ranks r WHERE r.layer = s.layer AND rank = $n) "
            "FROM unit_si s WHERE stat = 'max' GROUP BY ALL ORDER BY 1", {"n": LIMIT}
        ).fetchall()
        stored = con.execute(
            "SELECT image_id, unit, act_mean, act_max, act_min FROM responses WHERE layer = 'mixed3a' "
            "ORDER BY image_id, unit"
        ).fetchnumpy()
        # Two random bases of the claims' default layer: of conv1 and mixed3a, mixed3a, 3/11 of the network's depth.
        assert con.execute("SELECT layer, basis, seed FROM bases ORDER BY 2").fetchall() == [
            ("mixed3a", 0, 0), ("mixed3a", 1, 1)]
        assert con.execute("SELECT count(*), count(DISTINCT (basis, unit, image_id)) FROM basis_responses"
                           ).fetchall() == [(2 * 256 * LIMIT, 2 * 256 * LIMIT)]
    assert [r[0] for r in images] == list(range(LIMIT))
    manifest = {row["path"]: row for row in csv.DictReader(open(imagenet_sample / "manifest.csv"))}
    classes = load_imagenet_classes()
    for _, path, wnid, index, name, width, height, mode in images:
        row = manifest[path]
        assert (wnid, index, width, height, mode) == (
            row["wnid"], int(row["class_index"]), int(row["width"]), int(row["height"]), row["mode"]
        )  # fmt: skip
        assert name == classes[wnid].name
    # --limit spreads over the sorted folder: dogs and other classes alike.
    n_dogs = sum(manifest[path]["is_dog"] == "1" for _, path, *_ in images)
    assert 3 <= n_dogs <= LIMIT - 10
    assert n_responses == n_distinct == LIMIT * (64 + 256)
    # SI for every built-in category (undefined for one without images among the 24) and ranks for every unit.
    units = {"conv1": 64, "mixed3a": 256}
    assert sorted((layer, c) for layer, c, *_ in scores) == sorted((la, c) for la in LAYERS for c in BUILTIN_SYNSETS)
    assert all(n == ranked == units[layer] for layer, _, n, _, ranked in scores)
    assert [(layer, n_si) for layer, c, _, n_si, _ in scores if c == "dog"] == [("conv1", 64), ("mixed3a", 256)]

    # The stored values are the network's: recompute two images directly and compare.
    from PIL import Image

    from worker.extract import Extractor

    picks = [0, LIMIT - 1]
    pixels = torch.stack([model.transform(Image.open(imagenet_sample / images[i][1]).convert("RGB")) for i in picks])
    with Extractor(model, ["mixed3a"], "cpu") as extractor:
        expected = extractor(pixels)["mixed3a"].numpy()
    got = np.stack([stored[c] for c in ("act_mean", "act_max", "act_min")], axis=1).reshape(LIMIT, 256, 3)
    np.testing.assert_allclose(got[picks], expected, rtol=1e-5, atol=1e-4)


def test_another_networks_weights_for_a_job_on_the_run_name_the_runs_own(real_run, bvlc_weights, capsys, no_env):
    """visualize and ablate given SqueezeNet's folder for a BVLC GoogLeNet run: one line saying these do not load as
    the run's network, and which weights it recorded, not only the Caffe loader's missing file."""
    db, result = real_run
    assert result.returncode == 0, result.stderr
    squeezenet = bvlc_weights.parent / "squeezenet1_1"
    if not squeezenet.is_dir():
        pytest.skip("no SqueezeNet weights beside the BVLC ones")
    for job in ("visualize", "ablate"):
        capsys.readouterr()
        assert cli.main([job, "--db", str(db), "--layer", LAYERS[0], "--units", "1", "--weights", str(squeezenet)]) \
            == cli.EXIT_ERROR
        err = capsys.readouterr().err
        assert err.startswith(f"error: --weights {squeezenet} do not load as run 1's bvlc-googlenet ("), err
        with duckdb.connect(str(db), read_only=True) as con:
            recorded = con.execute("SELECT weights FROM runs").fetchone()[0]
        assert err.rstrip().endswith(f"pass the run's own, {recorded}") and "Traceback" not in err
        assert Path(recorded).resolve().is_relative_to(bvlc_weights.resolve())


def test_rerunning_a_published_configuration_does_nothing(real_run, imagenet_sample, bvlc_weights):
    db, first = real_run
    assert first.returncode == 0, first.stderr
    before = db.stat().st_mtime_ns
    code = cli.main(["run", "--images", str(imagenet_sample), "--db", str(db), "--model", "bvlc-googlenet",
                     "--weights", str(bvlc_weights), "--layers", *LAYERS, "--limit", str(LIMIT)])  # fmt: skip
    assert code == 0 and db.stat().st_mtime_ns == before


# ---------------------------------------------------------------- errors: one line, exit 1


@pytest.fixture
def no_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("UNITSCOPE_"):
            monkeypatch.delenv(key)


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"--images": "{tmp}/missing"}, "error: images folder not found: {tmp}/missing"),
        ({"--layers": "mixed9z"}, "error: unknown layer(s) 'mixed9z'; valid layers are: conv1, conv2, conv3, "),
        ({"--category": "cat={tmp}/missing.txt"}, "error: category file not found: {tmp}/missing.txt"),
        ({"--category": "bad name=x"}, "error: invalid category name 'bad name'"),
        ({"--weights": "{tmp}/noweights", "--model": "bvlc-googlenet"},
         "error: weights {tmp}/noweights: no such file or folder"),
        # --model auto: a mistyped Caffe folder is not reported as a missing googlenet state dict
        ({"--weights": "{tmp}/typo/bvlc_googlenet"},
         "error: weights {tmp}/typo/bvlc_googlenet: no such file or folder"),
        ({"--weights": "{tmp}", "--model": "googlenet"},  # it exists, a folder
         "error: {tmp} is a folder: googlenet takes a torchvision state dict file (.pth)"),
        ({"--db": "{tmp}/nofolder/x.duckdb"},
         "error: cannot create {tmp}/nofolder/x.duckdb: folder {tmp}/nofolder does not exist"),
        ({"--batch-size": "0"}, "error: --batch-size: input should be greater than or equal to 1, got '0'"),
        ({"--workers": "two"}, "error: --workers: input should be a valid integer"),
    ],
)  # fmt: skip
def test_user_errors_are_one_line_with_exit_1(
    tmp_path, capsys, no_env, imagenet_sample, bvlc_weights, change, expected
):
    flags = {"--images": str(imagenet_sample), "--db": str(tmp_path / "x.duckdb"), "--weights": str(bvlc_weights),
             "--layers": "conv1", "--limit": "2"}  # fmt: skip
    flags.update({k: v.format(tmp=tmp_path) for k, v in change.items()})
    argv = ["run"] + [item for pair in flags.items() for item in pair]
    assert cli.main(argv) == cli.EXIT_ERROR
    assert error_line(capsys).startswith(expected.format(tmp=tmp_path))
    assert not (tmp_path / "x.duckdb").exists()


# Files none of which can be used: (relative path -> a real photo or a text file, the error's reasons, its end)
_LISTED, _DECODED = "", "; nothing was published"  # known from the listing, before the network; known once decoded


@pytest.mark.parametrize(
    ("layout", "reasons", "end"),
    [
        ({"a.JPEG": "photo", "b.JPEG": "photo"}, "2 not inside a class folder", _LISTED),
        ({"n02085620/a.jpg": "text", "n02085620/b.png": "text", "n02085620/notes.txt": "text"},
         "2 not an image (unrecognised format)", _DECODED),
        ({"a.JPEG": "photo", "n02085620/b.jpg": "text"},
         "1 not an image (unrecognised format), 1 not inside a class folder", _DECODED),
    ],
)  # fmt: skip
def test_a_folder_none_of_whose_files_can_be_used_is_one_clear_error_every_time(
    tmp_path, capsys, no_env, imagenet_sample, bvlc_weights, layout, reasons, end
):
    root, db = tmp_path / "images", tmp_path / "x.duckdb"
    photos = iter(sorted(imagenet_sample.glob("*/*.JPEG")))
    for name, kind in layout.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(next(photos).read_bytes() if kind == "photo" else b"not an image")
    argv = ["run", "--images", str(root), "--db", str(db), "--model", "bvlc-googlenet", "--weights", str(bvlc_weights),
            "--layers", "conv1", "--workers", "0"]  # fmt: skip
    for _ in range(2):  # the rerun says the same, rather than resuming into a crash
        assert cli.main(argv) == cli.EXIT_ERROR
        assert error_line(capsys) == (f"error: none of the 2 image files under {root} can be used ({reasons}); "
                                      f"expected ImageFolder layout <root>/<wnid>/<image>: a folder per class, each "
                                      f"holding images{end}")  # fmt: skip
        assert [p.name for p in tmp_path.glob("x.duckdb*")] == ["x.duckdb.lock"]  # nothing published or left half-done


def test_the_unusable_files_error_counts_kinds_of_reason():
    from worker.images import none_usable

    reasons = {"cannot decode: broken data stream": 2, "cannot decode: truncated": 1, "permission denied": 2,
               "symlink loop": 1, "empty file (0 bytes)": 1}  # fmt: skip
    assert none_usable("/r", reasons).startswith(
        "none of the 7 image files under /r can be used (3 cannot decode, 2 permission denied, 1 empty file (0 bytes), "
        "1 for other reasons); expected ImageFolder layout"
    )


def test_a_limit_that_chose_only_unusable_files_says_so():
    from worker.images import FileEntry, ImagesError, require_usable

    at_root = [FileEntry("a.jpg", ""), FileEntry("b.jpg", "")]
    with pytest.raises(ImagesError, match=r"\(2 not inside a class folder\).* \(--limit chose these 2 of the 6,308 "
                                          r"files found\)$"):
        require_usable(Path("/r"), at_root, 6308)
    usable = [*at_root, FileEntry("n01/c.jpg", "n01")]
    assert require_usable(Path("/r"), usable, 6308) == usable  # one usable file: the run goes on


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("UNITSCOPE_BATCH_SIZE", "lots", "error: UNITSCOPE_BATCH_SIZE: input should be a valid integer, unable to "
         "parse string as an integer, got 'lots'"),
        ("UNITSCOPE_LIMIT", "0", "error: UNITSCOPE_LIMIT: input should be greater than or equal to 1, got '0'"),
        ("UNITSCOPE_MODEL", "lenet5", "error: UNITSCOPE_MODEL: input should be 'auto', 'alexnet', 'bvlc-googlenet', "
         "'googlenet', 'inception_v3', "),
        ("UNITSCOPE_SEED", "3", "error: UNITSCOPE_SEED: value error, a seed only applies to --weights random, got '3'"),
        ("UNITSCOPE_DEBUG", "maybe", "error: UNITSCOPE_DEBUG: input should be a valid boolean"),
    ],
)  # fmt: skip
def test_a_bad_environment_value_is_a_one_line_error_naming_the_variable(monkeypatch, capsys, no_env, name, value,
                                                                        expected):  # fmt: skip
    monkeypatch.setenv(name, value)
    assert cli.main(["run"]) == cli.EXIT_ERROR
    assert error_line(capsys).startswith(expected)


def test_a_missing_setting_names_its_flag_and_its_variable(capsys, no_env, tmp_path):
    assert cli.main(["export", "--db", str(tmp_path / "x.duckdb")]) == cli.EXIT_ERROR
    assert error_line(capsys) == "error: --out (or UNITSCOPE_OUT) is required"


def test_a_bad_flag_choice_is_refused_by_argparse(capsys, no_env):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--device", "tpu"])
    assert exit_info.value.code == 2
    assert "argument --device: invalid choice: 'tpu'" in capsys.readouterr().err


# ---------------------------------------------------------------- settings


def parsed(argv: list[str]) -> WorkerSettings:
    """The settings `python -m worker run ARGV` would run with."""
    return from_flags(WorkerSettings, cli.build_parser().parse_args(["run", *argv]))


def test_settings_come_from_the_environment_and_flags_override_them(monkeypatch, no_env):
    env = {"UNITSCOPE_IMAGES": "/data/imgs", "UNITSCOPE_DB": "/data/u.duckdb", "UNITSCOPE_BATCH_SIZE": "16",
           "UNITSCOPE_LAYERS": "conv1,mixed4c mixed5b", "UNITSCOPE_CATEGORIES": "a=/x  b=/y",
           "UNITSCOPE_DEVICE": "cpu", "UNITSCOPE_CACHE": "/c", "UNITSCOPE_LIMIT": "10", "UNITSCOPE_WORKERS": "",
           "UNITSCOPE_DEBUG": "1", "UNITSCOPE_MEMORY_LIMIT": "6GB"}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = parsed([])
    assert (settings.images, settings.db, settings.batch_size, settings.layers, settings.categories) == (
        Path("/data/imgs"), Path("/data/u.duckdb"), 16, ("conv1", "mixed4c", "mixed5b"), ("a=/x", "b=/y")
    )  # fmt: skip
    assert (settings.device, settings.cache, settings.limit, settings.model) == ("cpu", Path("/c"), 10, "auto")
    assert (settings.workers, settings.debug, settings.memory_limit, settings.restart) == (None, True, "6GB", False)
    flagged = parsed(["--db", "/other.duckdb", "--layers", "conv2", "conv3", "--category", "c=/z",
                      "--category", "d=/w", "--device", "cuda", "--restart", "--workers", "0"])  # fmt: skip
    assert (flagged.db, flagged.layers, flagged.categories, flagged.device, flagged.restart, flagged.workers) == (
        Path("/other.duckdb"), ("conv2", "conv3"), ("c=/z", "d=/w"), "cuda", True, 0
    )  # fmt: skip
    assert (flagged.images, flagged.batch_size) == (Path("/data/imgs"), 16)  # not given as flags: from the env


def test_layer_flags_take_commas_as_their_variables_do(no_env):
    assert parsed(["--layers", "mixed4c,mixed5b"]).layers == ("mixed4c", "mixed5b")
    assert parsed(["--layers", "conv1,", "mixed4c", "mixed4d, mixed5b"]).layers == ("conv1", "mixed4c", "mixed4d",
                                                                                  "mixed5b")  # fmt: skip
    assert parsed(["--basis-layers", "mixed4c,mixed5b"]).basis_layers == ("mixed4c", "mixed5b")
    with pytest.raises(SettingsError, match="no layer name"):  # commas alone are not "every layer"
        parsed(["--layers", ","])


def test_defaults_without_flags_or_variables(monkeypatch, no_env):
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    defaults = parsed([])
    assert (defaults.db, defaults.layers, defaults.cache, defaults.images, defaults.model) == (
        Path("unitscope.duckdb"), (), Path("/xdg/unitscope"), None, "auto"
    )  # fmt: skip
    assert (defaults.batch_size_for("cpu"), defaults.batch_size_for("cuda")) == (16, 256)


def test_every_setting_has_one_flag_and_one_variable_in_the_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, field in WorkerSettings.model_fields.items():
        assert f"[UNITSCOPE_{name.upper()}]" in text, name
        assert flag_name(name, field) in text, name
    assert "--category NAME=WNID|FILE" in text and "--layers LAYER [LAYER ...]" in text
    assert "default: all layers of the model" in text


def test_basis_layers_default_to_the_claims_layer(no_env):
    layers = ["conv1", "conv2", "conv3", "mixed3a", "mixed3b", "mixed4a", "mixed4b", "mixed4c", "mixed4d", "mixed4e",
              "mixed5a", "mixed5b"]
    assert WorkerSettings().resolved_basis_layers(layers) == ("mixed4c",)
    assert WorkerSettings(basis_layers="all").resolved_basis_layers(layers[:3]) == ("conv1", "conv2", "conv3")
    assert WorkerSettings(basis_layers="mixed5b, conv1").resolved_basis_layers(layers) == ("conv1", "mixed5b")
    assert WorkerSettings(bases=0).resolved_basis_layers(layers) == ()
    # Some layers run: placed by the network's depth, where among the two run conv1 would be "2/3 of the way".
    assert WorkerSettings().resolved_basis_layers(["conv1", "mixed4c"], layers) == ("mixed4c",)
    assert WorkerSettings().resolved_basis_layers(["mixed4c", "mixed4d", "mixed4e"], layers) == ("mixed4c",)
    assert WorkerSettings().resolved_basis_layers(["mixed5a", "mixed5b"], layers) == ("mixed5a",)  # none shallow enough
    assert WorkerSettings().resolved_basis_layers(["conv1", "mixed4c"]) == ("conv1",)  # the network unknown
    with pytest.raises(ValueError, match="--basis-layers mixed9: not among the layers run"):
        WorkerSettings(basis_layers=("mixed9",)).resolved_basis_layers(layers)


def test_auto_model_follows_the_weights(tmp_path, no_env):
    (tmp_path / "folder").mkdir()
    (tmp_path / "w.pth").write_bytes(b"")
    assert WorkerSettings(weights=str(tmp_path / "folder")).resolved_model() == "bvlc-googlenet"
    assert WorkerSettings(weights=str(tmp_path / "w.pth")).resolved_model() == "googlenet"
    assert WorkerSettings().resolved_model() == "googlenet"
    assert WorkerSettings(model="googlenet", weights=str(tmp_path / "folder")).resolved_model() == "googlenet"
    # A Caffe folder whose deploy.prototxt names its network (the shared folders' first lines)
    for name, model in (("SqueezeNet", "squeezenet1_1"), ("GoogleNet", "bvlc-googlenet")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "deploy.prototxt").write_text(f'name: "{name}"\nlayer {{\n')
        assert WorkerSettings(weights=str(tmp_path / name)).resolved_model() == model


# ---------------------------------------------------------------- categories


def test_builtin_dog_is_imagenet_classes_151_to_268():
    classes = load_imagenet_classes()
    assert len(classes) == 1000
    dog = builtin_category("dog")
    assert len(dog.wnids) == 118
    assert sorted(classes[w].index for w in dog.wnids) == list(range(151, 269))


def test_category_files_parse_with_comments_and_names(tmp_path):
    path = tmp_path / "canids.txt"
    path.write_text("# wild canids\nn02114367 timber wolf\n\n  n02115641 dingo  # the dog of Australia\nn02114367\n")
    category = parse_category_arg(f"wild-canid_2={path}")
    assert (category.name, category.wnids) == ("wild-canid_2", ("n02114367", "n02115641"))
    names = [c.name for c in load_categories([f"wolf={path}"])]
    assert names == sorted([*BUILTIN_SYNSETS, "wolf"])
    replaced = {c.name: c for c in load_categories([f"dog={path}"])}
    assert replaced["dog"].wnids == ("n02114367", "n02115641")


@pytest.mark.parametrize(
    ("text", "arg", "message"),
    [
        ("n02114367\nwolf n02114367\n", "w={path}", r"canids.txt:2: 'wolf' is not a WNID"),
        ("n0211436\n", "w={path}", r"'n0211436' is not a WNID"),
        ("# nothing\n", "w={path}", r"lists no WNIDs"),
        ("n02114367\n", "w", r"no built-in category 'w'; built-in: dog, bird"),
        ("n02114367\n", "w=", r"--category expects NAME=WNID, NAME=FILE or a built-in NAME"),
        ("n02114367\n", "a/b={path}", r"invalid category name 'a/b'"),
        ("n02114367\n", "w={path}.missing", r"category file not found"),
    ],
)
def test_bad_category_input_is_refused_clearly(tmp_path, text, arg, message):
    path = tmp_path / "canids.txt"
    path.write_text(text)
    with pytest.raises(CategoryError, match=message):
        parse_category_arg(arg.format(path=path))


def test_a_category_given_twice_is_refused(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("n02114367\n")
    with pytest.raises(CategoryError, match="given twice"):
        load_categories([f"w={path}", f"w={path}"])


def test_googlenet_from_a_local_state_dict_runs_through_the_cli(tmp_path, imagenet_sample):
    import hashlib

    import torchvision

    torch.manual_seed(0)
    weights = tmp_path / "googlenet.pth"
    torch.save(torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True).state_dict(), weights)
    db = tmp_path / "tv.duckdb"
    cmd = [sys.executable, "-m", "worker", "run", "--images", str(imagenet_sample), "--db", str(db),
           "--weights", str(weights), "--layers", "conv1", "mixed3a", "--limit", "6", "--workers", "0"]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        model, sha, preprocessing = con.execute("SELECT model, weights_sha256, preprocessing FROM runs").fetchone()
        modules = con.execute("SELECT layer, module FROM layers ORDER BY position").fetchall()
        n_responses = con.execute("SELECT count(*) FROM responses").fetchone()[0]
    assert model == "googlenet"  # --model auto picks googlenet for a .pth file
    assert sha == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert json.loads(preprocessing)["convention"] == "torchvision"
    assert modules == [("conv1", "conv1"), ("mixed3a", "inception3a")]
    assert n_responses == 6 * (64 + 256)
    # Two of the network's 12 layers run: the claims' layer is placed by the network's depth (mixed3a is 3/11 of the
    # way), where among the two run conv1 would have been "at most 2/3"; the random bases are recorded on it, and the
    # network's order survives a republication of the derived tables.
    assert cli.main(["derive", "--db", str(db)]) == 0
    with duckdb.connect(str(db), read_only=True) as con:
        basis_layers = con.execute("SELECT DISTINCT layer FROM bases").fetchall()
        (run,) = runs(ConnectionSource(con, database=None))
    assert basis_layers == [("mixed3a",)]
    assert run.network == tuple(GOOGLENET_LAYERS)
    layer, reason = run.default_layer()
    assert layer == "mixed3a" and "through the network (0.27)" in reason
    # The pages' depth axis is the network's too: conv1 at 0 and mixed3a at 3/11 (not 0 and 1 of the two recorded).
    from fastapi.testclient import TestClient
    from fixtures import make_settings

    from app.main import create_app

    with TestClient(create_app(make_settings(db, tmp_path))) as client:
        (dog,) = [c for c in client.get("/api/categories").json()["categories"] if c["category"] == "dog"]
        claims = client.get("/api/claims").json()
    assert [(s["layer"], s["depth"]) for s in dog["layers"]] == [("conv1", 0.0), ("mixed3a", pytest.approx(3 / 11))]
    assert claims["layer"] == "mixed3a"
