"""The small scenario file that the CLI, sweep, integrity, progress and metadata tests write:
a Gaussian mixture, a one- or two-layer ReLU (or deep linear) net, LM-last with λ = 0.01. One
template; each test passes what it varies (values, or ``{placeholders}`` it fills later with
``str.format``) and appends its own tables."""


def scenario_text(
    name="tiny",
    *,
    description=None,
    kind="mlp",
    widths=(4,),
    n_train=16,
    dim=3,
    t1=1.0,
    save_every=0.05,
    tables="",
) -> str:
    """A scenario TOML: ``[scenario]``, ``[data]``, ``[model]``, ``[problem]``, ``[time]``,
    then ``tables`` verbatim (the runs, ``[output]``, ``[sweep]``, ...)."""
    about = f'description = "{description}"\n' if description else ""
    return f"""
[scenario]
name = "{name}"
{about}
[data]
name = "gaussian-mixture"
n_train = {n_train}
n_test = 8
dim = {dim}
seed = 0

[model]
kind = "{kind}"
widths = [{", ".join(map(str, widths))}]
init_scale = 0.5
seed = 0

[problem]
weight_decay = 0.01
normalization = "lm-last"

[time]
t1 = {t1}
save_every = {save_every}

{tables}"""


#: The sweep and browse tests' scenario: SGD on 24 samples, 4 saves to t = 1; ``{name}`` and
#: ``{extra}`` (e.g. a ``[sweep]`` table) filled by each test.
SGD_BASE = scenario_text(
    "{name}",
    widths=(5,),
    n_train=24,
    dim=4,
    save_every=0.25,
    tables="[sgd]\nlr = 0.05\nbatch_size = 8\n{extra}\n",
)


def shared_folder(tmp_path_factory, name: str, build):
    """``(folder, value)``: a folder that ``build(folder)`` fills once per test session, with
    ``value`` what ``build`` returned (JSON). A module fixture runs once in every pytest-xdist
    worker that runs one of its tests (twice under ``-n 2``, compiling the same programs twice);
    here the first worker to ask builds the folder under a lock (``fcntl.flock``) in the
    session's shared temporary folder, and the others wait for it and read it. Tests may add
    files of their own names to the folder, never change what ``build`` wrote."""
    import fcntl
    import json
    import os
    import shutil

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        return folder, build(folder)
    root = tmp_path_factory.getbasetemp().parent  # one per session, shared by its workers
    folder, done = root / f"shared-{name}", root / f"shared-{name}.json"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
            folder.mkdir()
            done.write_text(json.dumps(build(folder)))
    return folder, json.loads(done.read_text())
