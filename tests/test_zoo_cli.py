"""The zoo (registry, verified downloads, offline behaviour) and the sampling CLI."""
import dataclasses
import functools
import http.server
import io
import json
import threading

import numpy as np
import pytest
import torch

from fsvae_sj import ANNVAE, FSVAE, FSVAEConfig, hub, zoo
from fsvae_sj.cli.sample import main as sample_main
from conftest import assert_refused

TINY_LARGE = FSVAEConfig(in_channels=3, image_size=8, hidden_dims=(4, 8), latent_dim=6, k=3, n_steps=4)


def authors_format(model: FSVAE) -> bytes:
    """Our weights written in the authors' time-last layout (a stand-in for their .pth)."""
    sd = {}
    for k, v in model.state_dict().items():
        k = k.replace(".layer.", ".")
        sd[k] = v.unsqueeze(-1) if v.dim() == 4 else v
    T, L = model.config.n_steps, model.config.latent_dim
    sd["prior.initial_input"] = torch.zeros(1, L, 1)
    sd["posterior.initial_input"] = torch.zeros(1, L, 1)
    sd["membrane_output_layer.coef"] = torch.pow(0.8, torch.arange(T - 1, -1, -1))[None, None, None, None, :]
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.getvalue()


@pytest.fixture
def served(tmp_path):
    """A directory served over HTTP on the loopback interface."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


CELEBA = hub.entries._builtin_entries()[0]


def stand_in_entries(url, blob, name="celeba"):
    return [dataclasses.replace(CELEBA, name=name, urls=(url,), git_blob=blob, config=TINY_LARGE.to_dict(),
                                num_params=None)]


def test_authors_weights_download_verify_convert_and_reject(served, tmp_path, monkeypatch, zoo_dir):
    root, url = served
    torch.manual_seed(0)
    model = FSVAE(TINY_LARGE).eval()
    (root / "good.pth").write_bytes(authors_format(model))
    import hashlib
    data = (root / "good.pth").read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    zoo_dir(tmp_path / "no-zoo")
    monkeypatch.delenv("FSVAE_SJ_OFFLINE", raising=False)

    # offline: fails with the placement instructions
    monkeypatch.setattr(hub.entries, "_builtin_entries", lambda: stand_in_entries(url + "/good.pth", blob))
    with pytest.raises(zoo.ZooError, match=r"offline mode is on.*place it at .*fsvae_celeba_demo.pth.*git blob"):
        zoo.load("celeba", cache_dir=tmp_path / "cache", offline=True)
    monkeypatch.setenv("FSVAE_SJ_OFFLINE", "1")
    with pytest.raises(zoo.ZooError, match="offline"):
        zoo.load("celeba", cache_dir=tmp_path / "cache")
    monkeypatch.delenv("FSVAE_SJ_OFFLINE")

    loaded = zoo.load("celeba", cache_dir=tmp_path / "cache")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert (tmp_path / "cache" / "fsvae_celeba_demo.pth").is_file()
    assert (tmp_path / "cache" / "fsvae_celeba_demo.fsvae-sj.safetensors").is_file()
    assert not list((tmp_path / "cache").glob("*.lock"))
    again = zoo.load("celeba", cache_dir=tmp_path / "cache")   # from the converted file
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    # the class takes the same path: converted on first load into its own cache, or read converted
    for cache in ("cache", "cache-class"):
        via_class = FSVAE.from_pretrained("celeba", cache_dir=tmp_path / cache)
        assert all(torch.equal(v, via_class.state_dict()[k]) for k, v in model.state_dict().items())
    assert (tmp_path / "cache-class" / "fsvae_celeba_demo.fsvae-sj.safetensors").is_file()
    with pytest.raises(zoo.CheckpointError, match="celeba holds a model of architecture 'fsvae', not ANNVAE"):
        ANNVAE.from_pretrained("celeba", cache_dir=tmp_path / "cache")

    # the entry's source changes (new weights, new blob): the old conversion is not served
    torch.manual_seed(1)
    newer = FSVAE(TINY_LARGE).eval()
    (root / "newer.pth").write_bytes(authors_format(newer))
    new_blob = zoo.git_blob_id(root / "newer.pth")
    (tmp_path / "cache" / "fsvae_celeba_demo.pth").unlink()
    monkeypatch.setattr(hub.entries, "_builtin_entries", lambda: stand_in_entries(url + "/newer.pth", new_blob))
    got = zoo.load("celeba", cache_dir=tmp_path / "cache")
    assert all(torch.equal(v, got.state_dict()[k]) for k, v in newer.state_dict().items())
    got = zoo.load("celeba", cache_dir=tmp_path / "cache")
    assert all(torch.equal(v, got.state_dict()[k]) for k, v in newer.state_dict().items())
    monkeypatch.setattr(hub.entries, "_builtin_entries", lambda: stand_in_entries(url + "/good.pth", blob))
    (tmp_path / "cache" / "fsvae_celeba_demo.pth").write_bytes(data)

    # a file whose blob id differs is rejected and never lands in the cache
    (root / "bad.pth").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    monkeypatch.setattr(hub.entries, "_builtin_entries", lambda: stand_in_entries(url + "/bad.pth", blob))
    with pytest.raises(zoo.ZooError, match=r"git blob [0-9a-f]{40}, expected " + blob):
        zoo.load("celeba", cache_dir=tmp_path / "cache2")
    assert not any((tmp_path / "cache2").glob("*.pth"))

    # a cached file that was corrupted later is reported, not loaded
    cached = tmp_path / "cache" / "fsvae_celeba_demo.pth"
    cached.write_bytes(data[:100])
    (tmp_path / "cache" / "fsvae_celeba_demo.fsvae-sj.safetensors").unlink()
    monkeypatch.setattr(hub.entries, "_builtin_entries", lambda: stand_in_entries(url + "/good.pth", blob))
    with pytest.raises(zoo.ZooError, match=r"corrupt or truncated .*Download .*good.pth by hand"):
        zoo.load("celeba", cache_dir=tmp_path / "cache")


def test_unknown_name_lists_valid_ones():
    with pytest.raises(zoo.ZooError, match="valid names: .*celeba"):
        zoo.get_weights("imagenet")


def test_shipped_entries_match_their_files():
    """Every entry shipped in zoo/: file size, SHA-256 and parameter count as recorded."""
    names = [n for n in zoo.list_models() if zoo.get_weights(n).source_format == "fsvae-sj"]
    assert "fashion-mnist" in names
    for n in names:
        w = zoo.get_weights(n)
        path = zoo.ZOO_DIR / w.file_name
        assert path.stat().st_size == w.size
        assert hub.sources.sha256_file(path) == w.sha256
        model = zoo.load(n)
        trainable = sum(p.numel() for p in model.parameters())
        assert trainable == w.num_params
        assert w.architecture() == model.config.to_dict()   # from the file's header
        assert w.metrics["recon_mse"] is not None and w.metrics["autoencoder_frechet"] is not None
        assert w.card().startswith(f"# {n} ")
    assert zoo.get_weights("celeba").num_params == sum(p.numel() for p in FSVAE(FSVAEConfig.large()).parameters())


def test_the_config_is_stored_once():
    """A shipped entry's architecture lives in its safetensors header only (the JSON describes
    the entry); the authors' entry, whose .pth carries none, holds the converter's FSVAELarge as
    the plain dict a header holds (the hub knows no model class: this pins it to the models')."""
    for p in sorted(zoo.ZOO_DIR.glob("*.json")):
        data = json.loads(p.read_text())
        assert "arch_config" not in data and "config" not in data, p
        w = zoo.get_weights(data["name"])
        assert w.config is None and w.architecture() == zoo.read_config(zoo.ZOO_DIR / w.file_name)
    celeba = zoo.get_weights("celeba")
    assert dict(celeba.config) == FSVAEConfig.large().to_dict() and "config" not in celeba.to_json()
    assert list(celeba.architecture().items()) == list(FSVAEConfig.large().to_dict().items())   # as the card shows it


def test_an_old_entry_with_the_duplicate_config_still_loads(tmp_path, monkeypatch, zoo_dir):
    old = json.loads((zoo.ZOO_DIR / "mnist-ann.json").read_text())
    old["arch_config"] = {"arch": "ann-vae", "in_channels": 7}   # the old copy; the file wins
    (tmp_path / "mnist-ann.json").write_text(json.dumps(old))
    (tmp_path / "mnist-ann.safetensors").symlink_to(zoo.ZOO_DIR / "mnist-ann.safetensors")
    zoo_dir(tmp_path)
    w = zoo.get_weights("mnist-ann")
    assert w.config is None and w.architecture()["in_channels"] == 1
    assert zoo.load("mnist-ann").config.in_channels == 1


def test_zoo_info_prints_the_architecture_from_the_header(capsys):
    from fsvae_sj.cli.zoo import main as zoo_main
    assert zoo_main(["info", "mnist"]) == 0
    arch = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- Architecture:")]
    assert arch == [f"- Architecture: `{zoo.read_config(zoo.ZOO_DIR / 'mnist.safetensors')}`"]


def test_from_pretrained_is_the_zoo_model_in_eval_mode(tmp_path):
    model = FSVAE.from_pretrained("fashion-mnist")
    ref = zoo.load("fashion-mnist")
    assert isinstance(model, FSVAE) and not model.training
    assert model.state_dict().keys() == ref.state_dict().keys()
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in model.state_dict().items())
    double = FSVAE.from_pretrained(zoo.ZOO_DIR / "fashion-mnist.safetensors", dtype=torch.float64, device="cpu")
    assert next(double.parameters()).dtype == torch.float64 and not double.training
    with pytest.raises(zoo.ZooError, match="valid names: .*fashion-mnist.*mnist"):
        FSVAE.from_pretrained("imagenet")
    with pytest.raises(zoo.CheckpointError, match="mnist-ann holds a model of architecture 'ann-vae', not FSVAE.*zoo.load"):
        FSVAE.from_pretrained("mnist-ann")


def test_zoo_load_takes_a_dtype_and_refuses_a_non_floating_one():
    ref = zoo.load("mnist-ann")
    double = zoo.load("mnist-ann", dtype=torch.float64)
    assert not double.training and double.weights_source.name == "mnist-ann"
    assert {v.dtype for v in double.state_dict().values() if v.is_floating_point()} == {torch.float64}
    assert all(torch.equal(v, ref.state_dict()[k].to(v.dtype)) for k, v in double.state_dict().items())
    with pytest.raises(zoo.ZooError, match="dtype must be a floating-point torch.dtype.*torch.int64"):
        zoo.load("mnist-ann", dtype=torch.int64)


def test_ann_from_pretrained_behaves_as_fsvae_from_pretrained(tmp_path):
    import inspect
    assert inspect.signature(ANNVAE.from_pretrained).parameters == inspect.signature(FSVAE.from_pretrained).parameters
    ann = ANNVAE.from_pretrained("mnist-ann", device="cpu", dtype=torch.float64)
    ref = zoo.load("mnist-ann", dtype=torch.float64)
    assert isinstance(ann, ANNVAE) and not ann.training and next(ann.parameters()).dtype == torch.float64
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in ann.state_dict().items())
    path = ANNVAE.from_pretrained(zoo.ZOO_DIR / "mnist-ann.safetensors")
    assert next(path.parameters()).dtype == torch.float32
    with pytest.raises(zoo.CheckpointError, match="architecture 'fsvae', not ANNVAE.*zoo.load"):
        ANNVAE.from_pretrained("mnist")
    with pytest.raises(zoo.ZooError, match="valid names: .*mnist-ann"):
        ANNVAE.from_pretrained("imagenet")
    # cache_dir and offline reach the zoo from both classes: an entry not stored here is refused
    # offline, naming the cache folder given
    for cls in (FSVAE, ANNVAE):
        with pytest.raises(zoo.ZooError, match=f"offline mode is on.*{tmp_path / cls.__name__}"):
            cls.from_pretrained("celeba", cache_dir=tmp_path / cls.__name__, offline=True)


def test_every_architecture_has_from_pretrained():
    """Each registered model class builds from its own config class (what from_pretrained builds
    a file's stored config with) and inherits the one from_pretrained."""
    from fsvae_sj.models.pretrained import PretrainedMixin
    from fsvae_sj.models.registry import ARCHITECTURES
    assert set(ARCHITECTURES) == {"fsvae", "ann-vae"}
    for a in ARCHITECTURES.values():
        assert a.model.config_class is a.config and a.config.arch == a.name, a.name
        assert a.model.from_pretrained.__func__ is PretrainedMixin.from_pretrained.__func__, a.name


def test_from_pretrained_needs_no_zoo_import(tmp_path, tiny_cfg):
    """The model module alone loads weights: no loader is registered at import time. In a fresh
    process whose package facade is left out (``fsvae_sj/__init__.py`` imports the zoo), importing
    fsvae_sj.models.fsvae and calling from_pretrained loads a file of ours exactly, never imports
    fsvae_sj.zoo, and refuses a file of another architecture naming zoo.load."""
    import os
    import subprocess
    import sys

    from fsvae_sj import ANNVAEConfig, save_model
    torch.manual_seed(0)
    save_model(FSVAE(tiny_cfg), tmp_path / "f.safetensors")
    save_model(ANNVAE(ANNVAEConfig(image_size=8, hidden_dims=(4, 8), latent_dim=6)), tmp_path / "a.safetensors")
    package = os.path.dirname(os.path.dirname(zoo.__file__))
    code = ("import sys, types\n"
            "facade = types.ModuleType('fsvae_sj')\n"
            f"facade.__path__ = [{package!r}]\n"
            "sys.modules['fsvae_sj'] = facade\n"
            "from fsvae_sj.models.fsvae import FSVAE\n"
            "from fsvae_sj.errors import CheckpointError\n"
            "m = FSVAE.from_pretrained(sys.argv[1])\n"
            "print(type(m).__name__, m.training, m.weights_source.kind, repr(sum(float(v.double().sum()) "
            "for v in m.state_dict().values())))\n"
            "try:\n    FSVAE.from_pretrained(sys.argv[2])\n"
            "except CheckpointError as e:\n    print('refused:', e)\n"
            "print(sorted(n for n in sys.modules if n.startswith('fsvae_sj.zoo')))\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "f.safetensors"), str(tmp_path / "a.safetensors")],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, FSVAE_SJ_OFFLINE="1", PYTHONPATH=os.path.dirname(package)))
    assert r.returncode == 0, r.stderr
    want = sum(float(v.double().sum()) for v in FSVAE.from_pretrained(tmp_path / "f.safetensors").state_dict().values())
    assert r.stdout.splitlines() == [
        f"FSVAE False file {want!r}",
        f"refused: {tmp_path / 'a.safetensors'} holds a model of architecture 'ann-vae', not FSVAE ('fsvae'); "
        f"load it with fsvae_sj.zoo.load({str(tmp_path / 'a.safetensors')!r})",
        "[]"]


def test_loading_by_name_hashes_the_file_once(monkeypatch, capsys, tmp_path):
    """The CLI's provenance line uses the digest load() verified: no second lookup or hash."""
    from fsvae_sj.cli import common as _cli
    calls = []
    real = hub.sources.sha256_file
    for module in (hub.fetching, hub.sources):   # verification and the provenance line
        monkeypatch.setattr(module, "sha256_file", lambda p: calls.append(p) or real(p))
    _cli.load_and_report("mnist", "cpu")
    w = zoo.get_weights("mnist")
    assert calls == [zoo.ZOO_DIR / w.file_name]
    assert capsys.readouterr().out == f"weights: zoo entry mnist -> {zoo.ZOO_DIR / w.file_name} (sha256 {w.sha256})\n"
    calls.clear()
    _cli.load_and_report(str(zoo.ZOO_DIR / "mnist.safetensors"), "cpu")   # a path: hashed once, for the line
    assert calls == [zoo.ZOO_DIR / "mnist.safetensors"]


def test_sample_cli_png_npy_latents_and_reproducibility(tmp_path, capsys):
    assert sample_main(["-n", "5", "--out", str(tmp_path / "a.npy"), "--format", "npy", "--seed", "3",
                        "--save-latents", str(tmp_path / "z.npy"), "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "sha256 " in out and "wrote 5 images" in out
    a = np.load(tmp_path / "a.npy")
    assert a.shape == (5, 1, 32, 32) and a.dtype == np.float32 and -1 <= a.min() and a.max() <= 1
    z = np.load(tmp_path / "z.npy")
    assert z.shape == (16, 5, 128) and set(np.unique(z)) <= {0, 1}
    assert sample_main(["-n", "5", "--out", str(tmp_path / "b.npy"), "--format", "npy", "--seed", "3"]) == 0
    assert np.array_equal(a, np.load(tmp_path / "b.npy"))
    # another seed, other latents (whatever the model makes of them)
    assert sample_main(["-n", "5", "--out", str(tmp_path / "c.npy"), "--seed", "4",
                        "--save-latents", str(tmp_path / "z4.npy")]) == 0
    assert not np.array_equal(z, np.load(tmp_path / "z4.npy"))
    # --batch-size changes nothing: image i depends on (seed, i) only
    assert sample_main(["-n", "5", "--out", str(tmp_path / "d.npy"), "--seed", "3", "--batch-size", "5",
                        "--save-latents", str(tmp_path / "z5.npy")]) == 0
    assert np.array_equal(z, np.load(tmp_path / "z5.npy"))
    assert np.allclose(a, np.load(tmp_path / "d.npy"), atol=1e-5)
    assert sample_main(["-n", "4", "--out", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args,msg", [
    (["-n", "0"], "-n must be >= 1"),
    (["--format", "gif"], "unknown --format"),
    (["--out", "/nonexistent-dir/x.png"], "does not exist"),
    (["--model", "imagenet"], "unknown model 'imagenet'"),
])
def test_sample_cli_bad_input(args, msg, capsys):
    assert_refused(sample_main(args), capsys, msg)


@pytest.mark.skipif(not __import__("fsvae_sj.datasets").datasets.DEBIAN_FASHION.is_dir(), reason="needs dataset-fashion-mnist")
def test_reconstruct_cli(tmp_path, capsys):
    from fsvae_sj.cli.reconstruct import main
    assert main(["-n", "3", "--format", "npy", "--out", str(tmp_path / "r.npy")]) == 0
    r = np.load(tmp_path / "r.npy")
    assert r.shape == (3, 1, 32, 32)
    assert "reconstructions of fashion-mnist test images" in capsys.readouterr().out
