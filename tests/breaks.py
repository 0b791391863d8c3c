"""Apply each listed break to a scratch copy of the code and check that a test fails.

    git worktree add /tmp/brk HEAD && python tests/breaks.py /tmp/brk && git worktree remove --force /tmp/brk
    python tests/breaks.py /tmp/brk K2 F1     # only the breaks so named (the first word of the name)
    PYTHONPATH=.venv/sj014 python tests/breaks.py /tmp/brk    # on the legacy SpikingJelly (as .ci/run)

Each break is a one-line change that no test noticed before (issue 13); the named tests must
fail with it and pass without it. Prints one line per break (each runs its tests: minutes, the
training-parity ones longest). A break finds its code by the text it replaces, read loosely
(:func:`pattern`: whitespace and line breaks may differ, brackets may gain a trailing comma), so
a reformat does not lose it; ``tests/test_breaks.py`` checks that each finds its code exactly once.
"""
import os
import re
import subprocess
import sys

BREAKS = [
 ("1 sample CLI ignores --seed", "fsvae_sj/cli/sample.py", "sample_generators(args.seed, n, start)", "sample_generators(0, n, start)", "tests/test_zoo_cli.py -k png_npy"),
 ("2 FSVAE.sample ignores seed/generator", "fsvae_sj/models/fsvae.py", "g = seeding.resolve(seed, generator, int(n))", "g = seeding.resolve(None, None, int(n))", "tests/test_model.py -k seed_and_i"),
 ("3 training posterior picks the wrong spike", "fsvae_sj/models/bernoulli.py", "return self.pick(out, torch.stack(indices)), out", "return self.pick(out, (torch.stack(indices) + 1) % self.k), out", "tests/test_model.py -k chosen"),
 ("4 _stop_on_signals never stops", "fsvae_sj/training/loop.py", "yield lambda: got[0] if got else None", "yield lambda: None", "tests/test_train.py -k sigterm_stops"),
 ("5 recon MSE divided by 3", "fsvae_sj/metrics.py", "    return total / count\n", "    return total / count / 3\n", "tests/test_data_eval.py -k unavailable"),
 ("6 energy per MAC x10", "fsvae_sj/opcount.py", "PJ_PER_AC, PJ_PER_MAC = 0.9, 4.6", "PJ_PER_AC, PJ_PER_MAC = 0.9, 46.0", "tests/test_ops.py"),
 ("7 flipped comparison in CuPy half2 backward", "fsvae_sj/spiking/surrogate.py", "__hlt2(", "__hgt2(", "tests/test_neurons.py -k cupy"),
 ("8 training CLI dies at start", "fsvae_sj/cli/train.py", "def main(argv=None) -> int:\n    args = parse_args(argv)", "def main(argv=None) -> int:\n    raise SystemExit(1)\n    args = parse_args(argv)", "tests/test_train.py -k killed"),
 ("K1 weight round trip loses buffers", "fsvae_sj/hub/checkpoint.py", "state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}", "state = {k: (v.detach().cpu().contiguous() * (0.5 if k.endswith('running_var') else 1)) for k, v in model.state_dict().items()}", "tests/test_model.py -k round_trip"),
 ("K2 LIF charge rounding", "fsvae_sj/spiking/equations.py", "    return torch.mul(v, decay, out=out).add_(x)\n", "    return torch.sub(v, v / (1.0 / (1.0 - decay)), out=out).add_(x)\n", "tests/test_neurons.py -k charge"),
 ("K2b compiled LIF charge rounding", "fsvae_sj/spiking/equations.py", "        return v * decay + x\n", "        return v - v / (1.0 / (1.0 - decay)) + x\n", "tests/test_neurons.py -k fused"),
 ("P1 tdBN training statistics on channels-last input", "fsvae_sj/spiking/tdbn.py", "flat = x.flatten(0, 1).contiguous()", "flat = x.flatten(0, 1)", "tests/test_train_parity.py"),
 ("P2 training step drops the MMD's PSP", "fsvae_sj/models/losses.py", "d = (psp(q_bar, tau_syn) - psp(p_bar, tau_syn)) ** 2", "d = (q_bar - p_bar) ** 2", "tests/test_train_parity.py -k float64"),
 ("K3 resume restarts", "fsvae_sj/training/loop.py", "    if (run / STATE).is_file():\n        rs = load_state", "    if False:\n        rs = load_state", "tests/test_train.py -k stop_anywhere"),
 ("F1 eval tdBN in another operation order", "fsvae_sj/spiking/equations.py", "return y.mul_(gain).div_(std).mul_(weight)", "return y.mul_(gain / std).mul_(weight)", "tests/test_tdbn.py -k eval"),
 ("F2 fused tdBN backward drops the statistics' term", "fsvae_sj/spiking/equations.py", "grad_y.copy_((gy - sum_gy / n - xhat * (sum_gy_xhat / n)) * (invstd * weight))", "grad_y.copy_((gy - sum_gy / n) * (invstd * weight))", "tests/test_train_parity.py -k fused"),
 ("F3 fused statistics accumulated in float32", "fsvae_sj/spiking/equations.py", "torch.var_mean(x.to(torch.float64), dim=(0, 1), correction=0)", "torch.var_mean(x, dim=(0, 1), correction=0)", "tests/test_tdbn_lif.py -k float32"),
 ("R1 read-out backward with the weights reversed in time", "fsvae_sj/models/fsvae.py", "coef.view(-1, *(1,) * grad.dim())", "coef.flip(0).view(-1, *(1,) * grad.dim())", "tests/test_layers.py -k readout"),
 ("C1 transposed-conv bias gradient off by 0.1%", "fsvae_sj/spiking/layers.py", "grad_b = grad.sum((0, 2, 3)) if need[2] else None", "grad_b = grad.sum((0, 2, 3)) * 1.001 if need[2] else None", "tests/test_layers.py -k conv_transpose"),
 ("B1 bool-saved spike inputs come back inverted", "fsvae_sj/spiking/layers.py", "return t if dtype is None else t.to(dtype)", "return t if dtype is None else (~t).to(dtype)", "tests/test_layers.py -k bool"),
 ("B2 inputs that are not spikes saved as bool anyway", "fsvae_sj/spiking/layers.py", "if torch.equal(packed.to(t.dtype), t):", "if True:", "tests/test_layers.py -k not_spikes"),
 ("I1 inference step keeps the membrane unreset", "fsvae_sj/spiking/lif.py", "s_out=spikes_t, v_out=v)", "s_out=spikes_t, v_out=None)", "tests/test_inference.py -k lif"),
 ("I2 inference path overwrites inputs it does not own", "fsvae_sj/spiking/layers.py", "owned = (y.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()", "owned = (True", "tests/test_inference.py -k alone"),
]


def pattern(old: str) -> re.Pattern:
    """``old`` as a regular expression whose group 1 is the code to replace: any run of whitespace
    may differ (line breaks included), an opening bracket or a comma may be followed by a line
    break, a closing bracket preceded by one and a trailing comma. An ``old`` that starts with
    indentation starts a line; one that ends with a line break ends one."""
    rx, loose = "", False   # loose: the previous token already allows whitespace after it
    for tok in re.findall(r"\s+|.", old.strip(), flags=re.S):
        if tok.isspace():
            rx += "" if loose else r"\s+"
        elif tok in ")]}":
            rx += r",?\s*" + re.escape(tok)
        else:
            rx += re.escape(tok) + (r"\s*" if tok in "([{," else "")
        loose = tok in "([{,"
    start = r"^[ \t]*" if old[:1].isspace() else ""
    end = r"[ \t]*$" if old.endswith("\n") else ""
    return re.compile(f"{start}({rx}){end}", re.M)


def apply(source: str, old: str, new: str) -> str:
    """``source`` with the one place ``old`` matches (:func:`pattern`) replaced by ``new``; raises
    LookupError naming how many places matched when that is not exactly one."""
    found = list(pattern(old).finditer(source))
    if len(found) != 1:
        raise LookupError(f"pattern found {len(found)} times")
    a, b = found[0].span(1)
    return source[:a] + new.strip() + source[b:]


if __name__ == "__main__":
    B = sys.argv[1] if len(sys.argv) > 1 else "/tmp/brk"
    chosen = set(sys.argv[2:])
    # the scratch copy first; a PYTHONPATH given (the legacy SpikingJelly's folder) stays behind it
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [B, os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1")
    for name, f, old, new, test in BREAKS:
        if chosen and name.split()[0] not in chosen:
            continue
        p = os.path.join(B, f)
        s = open(p).read()
        try:
            broken = apply(s, old, new)
        except LookupError as e:
            print(name, "PATTERN NOT FOUND:", e)
            continue
        open(p, "w").write(broken)
        try:
            r = subprocess.run(f"cd {B} && timeout 300 nice -n 5 python -m pytest -q -x -p no:cacheprovider {test}",
                               shell=True, env=env, capture_output=True, text=True)
            tail = [line for line in r.stdout.splitlines() if "passed" in line or "failed" in line]
            print(f"{name}: rc={r.returncode} {tail[-1] if tail else r.stdout[-300:]}", flush=True)
        finally:
            open(p, "w").write(s)
