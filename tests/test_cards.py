"""The zoo cards and their learning-curve pictures, written from an entry's metadata alone."""
import json

import matplotlib.pyplot as plt
import pytest

from fsvae_sj import zoo
from fsvae_sj.zoo import publish

CURVED = [n for n in zoo.list_models() if zoo.get_weights(n).curve_file]


def test_the_fsvae_entries_have_a_curve_and_the_ann_entries_none():
    assert {"fashion-mnist", "mnist"} <= set(CURVED)
    assert zoo.get_weights("mnist").curve_file == "mnist_curve.png"
    ann = zoo.get_weights("mnist-ann")
    assert ann.curve_file is None and "_curve.png" not in ann.card()


@pytest.mark.parametrize("name", CURVED)
def test_the_shipped_card_is_what_write_card_writes_and_embeds_its_curve(name):
    w = zoo.get_weights(name)
    shipped = (zoo.ZOO_DIR / f"{name}.md").read_text()
    assert shipped == w.card()
    assert f"]({name}_curve.png)" in shipped
    assert (zoo.ZOO_DIR / w.curve_file).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", CURVED)
def test_the_curve_plots_the_entrys_recorded_numbers(name):
    """Every evaluation's AE Frechet (raw and EMA) is on the picture at its CPU-hours, the card's own
    measurement is the published point, and the paper's row the level line."""
    data = json.loads((zoo.ZOO_DIR / f"{name}.json").read_text())
    recipe = data["recipe"]
    fig = publish.learning_curve_of(zoo.get_weights(name))
    try:
        afd_ax, mse_ax = fig.axes
        lines = {ln.get_label(): ln for ln in afd_ax.lines}
        for key, label in (("afd", "raw weights"), ("ema_afd", "EMA of the weights")):
            plotted = dict(zip(lines[label].get_xdata(), lines[label].get_ydata()))
            for r in recipe["evaluations"]:
                if key in r:   # an evaluation with --eval-samples 0 (the GPU runs') measured no AE Frechet
                    assert plotted[r["cpu_hours"]] == r[key]
            assert len(lines[label].get_xdata()) == sum(key in r for r in recipe["evaluations"])
        star = lines[f"published entry: {data['metrics']['autoencoder_frechet']:g}"]
        assert list(star.get_xdata()) == [recipe["cpu_hours"]]
        paper = data["eval_protocol"]["paper (Table 1, the authors' numbers)"]
        assert lines[f"paper (Table 1): {paper['autoencoder_frechet']:g}"].get_ydata()[0] == paper["autoencoder_frechet"]
        mse = {ln.get_label(): ln for ln in mse_ax.lines}
        raw = dict(zip(mse["raw weights"].get_xdata(), mse["raw weights"].get_ydata()))
        for r in recipe["per-epoch log"]:
            assert raw[r["cpu_hours"]] == r["test_recon_mse"]
    finally:
        plt.close(fig)


def test_write_card_writes_the_card_and_the_curve_into_a_folder(tmp_path):
    w = zoo.get_weights("mnist")
    assert publish.write_card(w, tmp_path) == tmp_path / "mnist.md"
    assert (tmp_path / "mnist.md").read_text() == w.card()
    png = (tmp_path / "mnist_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist.md", "mnist_curve.png"]   # no temporary left
    ann = zoo.get_weights("mnist-ann")
    publish.write_card(ann, tmp_path)
    assert not (tmp_path / "mnist-ann_curve.png").exists()
