"""Faults by class (issue 22): every input and every interruption gets a right answer.

One section per class: concurrency, untrusted file contents, interrupts, names, full and
read-only file systems, environment, mismatched data and models, memory and long work."""
import sys
import threading

import pytest
import torch

from fsvae_sj import ANNVAE, ANNVAEConfig, FSVAE
from fsvae_sj import datasets as data
from fsvae_sj.train import main as train_main
from conftest import assert_refused, make_alive

needs_fashion = pytest.mark.skipif(not data.DEBIAN_FASHION.is_dir(),
                                   reason="apt-get install dataset-fashion-mnist (done by .ci/run)")
TINY = ["--dataset", "fashion-mnist", "--limit-train", "48", "--limit-test", "16", "--batch-size", "8",
        "--epochs", "1", "--n-steps", "2", "--save-every", "1", "--no-progress", "--eval-samples", "0",
        "--fused-lif", "false"]


# -- 1. concurrency --------------------------------------------------------------------------------
def _in_threads(jobs, rounds: int = 30):
    """Run every job ``rounds`` times, each job in its own thread, with the interpreter switching
    threads as often as it can; returns the exceptions and the outputs of each job."""
    outputs, errors = [[] for _ in jobs], []
    start = threading.Barrier(len(jobs))

    def work(i):
        start.wait()
        for _ in range(rounds):
            try:
                outputs[i].append(jobs[i]())
            except Exception as e:   # noqa: BLE001 - collected and asserted on below
                errors.append(e)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    return errors, outputs


@pytest.mark.parametrize("arch", ["fsvae", "ann"])
def test_threads_sharing_one_model_get_the_single_thread_results(tiny_cfg, arch):
    torch.manual_seed(0)
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    if arch == "fsvae":
        m = make_alive(FSVAE(tiny_cfg), torch.rand(16, 1, 8, 8) * 2 - 1)
    else:
        m = ANNVAE(ANNVAEConfig(in_channels=1, image_size=8, hidden_dims=(4, 8), latent_dim=6)).eval()
    want_sample, want_recon = m.sample(5, seed=0), m.reconstruct(x, seed=1)
    assert want_sample.std(0).mean() > 1e-3 and want_recon.std(0).mean() > 1e-3   # outputs depend on the draws
    errors, (s1, s2, r) = _in_threads([lambda: m.sample(5, seed=0), lambda: m.sample(5, seed=0),
                                       lambda: m.reconstruct(x, seed=1)])
    assert not errors, errors[:3]
    assert all(torch.equal(s, want_sample) for s in s1 + s2)
    assert all(torch.equal(y, want_recon) for y in r)


@needs_fashion
def test_a_second_process_training_into_a_busy_run_folder_is_refused(tmp_path, capsys):
    from fsvae_sj.locks import claim_folder
    run = tmp_path / "run"
    run.mkdir()
    with claim_folder(run, "a training run"):   # as another process would hold it
        assert_refused(train_main(["--out", str(run)] + TINY), capsys, f"{run} is in use by another process")
    assert not (run / "state.pt").exists()
    assert train_main(["--out", str(run)] + TINY) == 0   # free again once released
