"""Saving and loading safety: what a ``.keras`` file can make attnkit do (docs/guarantees.md
S1-S5).

attnkit's part of a saved config is data: the canonical spec text, numbers, an activation name
and the ``plugins`` requirement strings. Loading re-parses the spec with the grammar and looks
names up in registries; it never runs, compiles or imports anything a file names. Tampered
archives (``config.json`` rewritten inside the zip) are refused with a clear error under
``safe_mode=True``, and an audit hook watches every load for ``exec``, ``compile``, unmarshalled
bytecode and imports. What could not load back is refused when saving instead: components no
plugin registers, and activations Keras keeps as code or as a name that means nothing elsewhere.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import uuid
import zipfile
from pathlib import Path

import attrs
import keras
import numpy as np
import pytest
from keras import ops
from support.crossload import load_elsewhere, require_backend, run_script
from support.fakedists import FakeDists, clean_plugin_env, only_attnkit_and

import attnkit
import attnkit.masks
import attnkit.poolings
import attnkit.scorers
from attnkit import (
    AttentionLayer,
    MissingPluginError,
    PluginConflictError,
    Registry,
    SpecError,
    SpecSyntaxError,
)
from attnkit.errors import KerasRegistrationError, SerializationError

registry_module = importlib.import_module("attnkit.registry")

# -- the audit hook -----------------------------------------------------------------------------

#: Events that mean code from somewhere other than attnkit's and Keras' own modules could run.
WATCHED = {
    "exec",
    "compile",
    "import",
    "marshal.loads",
    "pickle.find_class",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "subprocess.Popen",
    "ctypes.dlopen",
}
_AUDIT = {"on": False, "events": []}
_audit_installed = False


def _audit_hook(event, args, _state=_AUDIT, _watched=frozenset(WATCHED)):
    # Bound as defaults: at interpreter shutdown module globals become None, and the hook
    # (which cannot be removed) still runs.
    if _state["on"] and event in _watched:
        _state["events"].append((event, str(args[0])[:120] if args else ""))


def _install_audit_hook():
    global _audit_installed
    if not _audit_installed:
        sys.addaudithook(_audit_hook)  # cannot be removed; inert unless _AUDIT["on"]
        _audit_installed = True


@attrs.define
class Watched:
    """What one watched ``load_model`` did."""

    error: BaseException | None
    events: list
    new_modules: set


def watched_load(path: Path) -> Watched:
    """``keras.saving.load_model(path, safe_mode=True)`` under the audit hook."""
    _install_audit_hook()
    before = set(sys.modules)
    _AUDIT["events"].clear()
    _AUDIT["on"] = True
    error = None
    try:
        keras.saving.load_model(path, safe_mode=True)
    except Exception as caught:  # the tests assert which
        error = caught
    finally:
        _AUDIT["on"] = False
    return Watched(error, list(_AUDIT["events"]), set(sys.modules) - before)


def chain(error: BaseException) -> list[BaseException]:
    """``error`` and its causes: Keras wraps what a layer's constructor raises in TypeErrors."""
    found = []
    while error is not None and error not in found:
        found.append(error)
        error = error.__cause__ or error.__context__
    return found


def strings_in(value) -> set[str]:
    """Every string (keys too) in a JSON value: what a file could try to name."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set(value).union(*(strings_in(v) for v in value.values()))
    if isinstance(value, (list, tuple)):
        return set().union(*(strings_in(v) for v in value))
    return set()


# -- a saved model, and tampered copies of it -------------------------------------------------

CANARY = f"attnkit_canary_{uuid.uuid4().hex[:10]}"
CANARY_SOURCE = """
import pathlib
pathlib.Path(__file__).with_suffix(".imported").write_text("imported")

class Payload:
    pass

def payload(x):
    return x
"""


def _model(spec="additive+local3", **options) -> keras.Model:
    inputs = keras.Input((None, 4))
    return keras.Model(inputs, AttentionLayer(spec, name="attn", **options)(inputs))


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """A clean .keras file, loaded once so that Keras' lazy imports are behind us."""
    folder = tmp_path_factory.mktemp("clean")
    path = folder / "clean.keras"
    _model(attention_activation="tanh").save(path)
    keras.saving.load_model(path, safe_mode=True)
    return path


@pytest.fixture
def canary(tmp_path, monkeypatch) -> Path:
    """A module on sys.path that leaves a file behind if anything imports it."""
    (tmp_path / f"{CANARY}.py").write_text(CANARY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / f"{CANARY}.imported"
    sys.modules.pop(CANARY, None)


def tamper(clean: Path, target: Path, edit) -> dict:
    """Copy ``clean`` to ``target`` with ``edit(config)`` applied to config.json; the config."""
    with zipfile.ZipFile(clean) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return config


def attn(config: dict) -> dict:
    """The AttentionLayer entry of a saved functional model's config."""
    (layer,) = [entry for entry in config["config"]["layers"] if entry["name"] == "attn"]
    return layer


def _lambda_config() -> dict:
    """What Keras writes for a lambda activation (marshalled bytecode, base64)."""
    with pytest.warns(UserWarning, match="lambda"):  # Keras' own warning, not ours
        return keras.saving.serialize_keras_object(lambda scores: scores * 2)["config"]


def _set(**fields):
    return lambda config: attn(config).update(fields)


def _set_config(**fields):
    return lambda config: attn(config)["config"].update(fields)


# (edit, exception class somewhere in the chain, fragment of that exception's message)
TAMPERED = {
    "module_os": (
        _set(module="os", class_name="system", registered_name=None),
        TypeError,
        "Could not locate class 'system'",
    ),
    "registered_name_os": (
        _set(module="os", class_name="system", registered_name="os>system"),
        TypeError,
        "system",
    ),
    "module_canary": (
        _set(module=CANARY, class_name="Payload", registered_name=f"{CANARY}>Payload"),
        TypeError,
        "Payload",
    ),
    "spec_with_code": (
        _set_config(spec="__import__('os').system('x')"),
        SpecSyntaxError,
        "expected a component name",
    ),
    "spec_with_code_in_a_parameter": (
        _set_config(spec="dot(scale=__import__('os').system('x'))"),
        SpecError,
        "dot(scale=",
    ),
    "activation_lambda": (
        lambda config: attn(config)["config"].update(attention_activation=_lambda_config()),
        SerializationError,
        "Python bytecode",
    ),
    "activation_os_system": (
        _set_config(
            attention_activation={
                "module": "os",
                "class_name": "function",
                "config": "system",
                "registered_name": "system",
            }
        ),
        SerializationError,
        "attention_activation cannot be loaded",
    ),
    "activation_canary": (
        _set_config(
            attention_activation={
                "module": CANARY,
                "class_name": "function",
                "config": "payload",
                "registered_name": f"{CANARY}>payload",
            }
        ),
        SerializationError,
        "attention_activation cannot be loaded",
    ),
    "activation_exec": (
        _set_config(attention_activation="exec"),
        SerializationError,
        "attention_activation cannot be loaded",
    ),
    "unknown_plugin": (
        _set_config(spec="evil+causal", plugins={"evil": "attnkit-evil==6.6"}),
        MissingPluginError,
        "pip install 'attnkit-evil>=6.6'",
    ),
    "malformed_plugin_requirement": (
        _set_config(spec="evil+causal", plugins={"evil": "attnkit-evil==1; os.system('x') #"}),
        MissingPluginError,
        "malformed",
    ),
    "plugins_not_a_dict": (
        _set_config(plugins=["os"]),
        SerializationError,
        "'plugins' must be a dict",
    ),
    "plan_with_code": (
        _set_config(plan="__import__('os')"),
        ValueError,
        "plan must be one of",
    ),
    "unknown_argument": (
        _set_config(payload="os.system"),
        TypeError,
        "payload",
    ),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_s3_tampered_archive_is_refused_without_running_or_importing_anything(
    clean, canary, tmp_path, case
):
    edit, error_cls, fragment = TAMPERED[case]
    target = tmp_path / f"{case}.keras"
    config = tamper(clean, target, edit)
    watched = watched_load(target)
    assert watched.error is not None, f"{case}: the tampered file loaded"
    matching = [e for e in chain(watched.error) if isinstance(e, error_cls)]
    assert matching, f"{case}: {[type(e).__name__ for e in chain(watched.error)]}"
    assert any(fragment in str(e) for e in matching), str(watched.error)[-2000:]
    # Nothing ran, compiled, unmarshalled or imported, least of all what the file names.
    assert watched.events == []
    assert watched.new_modules & strings_in(config) == set()
    assert watched.new_modules == set()
    assert not canary.exists() and CANARY not in sys.modules


def test_s3_clean_archive_loads_without_running_or_importing_anything(clean):
    watched = watched_load(clean)
    assert watched.error is None
    assert watched.events == []
    assert watched.new_modules == set()


def test_s3_malformed_requirement_is_not_echoed(clean, tmp_path):
    """The install hint is built from what packaging parsed, never from the saved text."""
    shell = "attnkit-evil==1; os.system('curl x | sh') #"
    tamper(clean, tmp_path / "m.keras", _set_config(spec="evil", plugins={"evil": shell}))
    with pytest.raises(MissingPluginError) as info:
        keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    message = str(info.value)
    assert "malformed" in message and "'evil'" in message
    assert "curl" not in message and "os.system" not in message
    assert "pip install" not in message


def test_s3_lambda_layer_in_the_file_is_refused(tmp_path):
    """Keras' own Lambda layer (bytecode in the file) is refused in safe mode, nothing run."""
    inputs = keras.Input((None, 4))
    hidden = AttentionLayer("dot", name="attn")(inputs)
    outputs = keras.layers.Lambda(lambda x: x * 2)(hidden)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    watched = watched_load(path)
    assert isinstance(watched.error, ValueError)
    assert "lambda" in str(watched.error).lower() and "safe_mode" in str(watched.error)
    assert watched.events == []


# -- S3 at save time ----------------------------------------------------------------------------


def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


@pytest.mark.parametrize(
    "spec",
    ["additive(units=8)+causal3+local5", "gaussian(sigma=2.0)+last(units=4)", "dot+weighted"],
)
def test_s3_config_holds_only_data(spec):
    layer = AttentionLayer(
        spec, attention_activation="sigmoid", dropout=0.1, seed=3, attention_regularizer_weight=0.1
    )
    config = layer.get_config()
    assert _plain(config), config
    assert json.loads(json.dumps(config)) == config
    assert config["spec"] == attnkit.resolve(spec).canonical


@attrs.frozen
class UnregisteredScorer(attnkit.Scorer):
    name = "unregistered"

    def score(self, params, query, key):
        return ops.matmul(query, ops.swapaxes(key, -1, -2))


@attrs.frozen
class UnregisteredMask(attnkit.Mask):
    name = "unregmask"

    def allowed(self, query_positions, key_positions):
        return query_positions >= key_positions


@attrs.frozen
class UnregisteredPooling(attnkit.poolings.Seq):
    name = "unregpool"


@attrs.frozen
class ImpostorDot(attnkit.scorers.Dot):
    """Named like the built-in 'dot', but another class: the saved 'dot' would load as Dot."""


UNSAVABLE = {
    "scorer": (attnkit.Resolved.of(UnregisteredScorer()), "UnregisteredScorer"),
    "mask": (attnkit.Resolved.of(attnkit.scorers.Dot(), (UnregisteredMask(),)), "UnregisteredMask"),
    "pooling": (
        attnkit.Resolved.of(attnkit.scorers.Dot(), (), UnregisteredPooling()),
        "UnregisteredPooling",
    ),
    "impostor": (attnkit.Resolved.of(ImpostorDot()), "ImpostorDot"),
}


@pytest.mark.parametrize("case", sorted(UNSAVABLE))
def test_s3_unregistered_component_is_refused_at_save(case, tmp_path):
    resolved, class_name = UNSAVABLE[case]
    layer = AttentionLayer(resolved, name="attn")
    with pytest.raises(SerializationError) as info:
        layer.get_config()
    message = str(info.value)
    assert class_name in message and "layer 'attn'" in message
    assert "plugin" in message and "entry point" in message  # how to register it
    assert isinstance(info.value, ValueError)
    # The same refusal from model.save, before anything reaches the disk.
    inputs = keras.Input((None, 4))
    model = keras.Model(inputs, layer(inputs))
    with pytest.raises(SerializationError, match=class_name):
        model.save(tmp_path / "m.keras")


def _local_activation():
    def doubled(scores):
        return scores * 2

    return doubled


class _CallableObject:
    __name__ = "callable_object"  # Keras' layer call reads it; serialize() still refuses

    def __call__(self, scores):
        return scores


@keras.saving.register_keras_serializable(package="attnkit_tests")
def halved(scores):
    """A registered module-level activation: saved by name, loads anywhere this is imported."""
    return scores / 2


@pytest.mark.parametrize(
    ("activation", "fragment"),
    [
        (lambda scores: scores * 2, "lambda"),
        (_local_activation(), "local function"),
        (_CallableObject(), "cannot rebuild"),
    ],
    ids=["lambda", "local_function", "callable_object"],
)
def test_s3_activation_keras_cannot_name_is_refused_at_save(activation, fragment, tmp_path):
    model = _model("dot+causal", attention_activation=activation)
    with pytest.raises(SerializationError) as info:
        model.get_layer("attn").get_config()
    message = str(info.value)
    assert fragment in message and "attention_activation" in message
    assert "register_keras_serializable" in message  # the fix
    with pytest.raises(SerializationError):
        model.save(tmp_path / "m.keras")


def tripled(scores):
    """A module-level activation nobody registered: Keras saves its name."""
    return scores * 3


def test_s3_unregistered_module_level_activation_saves_by_name(tmp_path):
    """Saved (by name, not code) and loaded with custom_objects, Keras' usual way; without
    them, load_model refuses by name and runs nothing."""
    model = _model("dot+causal", attention_activation=tripled)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(
        tmp_path / "m.keras", safe_mode=True, custom_objects={"tripled": tripled}
    )
    x = np.random.RandomState(0).randn(2, 5, 4).astype("float32")
    np.testing.assert_array_equal(ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)))
    watched = watched_load(tmp_path / "m.keras")
    assert isinstance(watched.error, SerializationError)
    assert "tripled" in str(watched.error)
    assert watched.events == []


@pytest.mark.parametrize("activation", ["tanh", keras.activations.sigmoid, halved])
def test_s3_activation_saved_by_name_loads(activation, tmp_path):
    model = _model("dot+causal", attention_activation=activation)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    x = np.random.RandomState(0).randn(2, 5, 4).astype("float32")
    np.testing.assert_array_equal(
        ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)), strict=True
    )


# -- S1 and S2: a plugin's layer in a fresh process, with and without the plugin ---------------

LOADER = r"""
import json, sys
import numpy as np, keras
import attnkit  # the only import: plugins are found through their entry points
job = json.loads(sys.argv[1])
x = np.load(job["x"])
out = {}
for name in job["models"]:
    try:
        model = keras.saving.load_model(job["folder"] + "/" + name + ".keras", safe_mode=True)
    except Exception as error:
        out[name] = {"error": type(error).__name__, "message": str(error)}
        continue
    np.save(job["folder"] + "/" + name + ".child.npy", keras.ops.convert_to_numpy(model(x)))
    out[name] = {"config": model.get_layer("attn").get_config()}
print(json.dumps(out))
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A fake plugin distribution 'attnkit-fakecos' 1.2.0 with the scorer 'fakecos', and the
    process-wide registry swapped for one that sees it (restored afterwards)."""
    clean_plugin_env(monkeypatch)
    only_attnkit_and(tmp_path, monkeypatch)
    dists = FakeDists(tmp_path, monkeypatch)
    dists.good("attnkit-fakecos", component="fakecos", version="1.2.0")
    monkeypatch.setattr(registry_module, "_default", Registry())
    yield dists.tmp_path / "attnkit-fakecos"
    dists.cleanup()


def _run_loader(job: dict, pythonpath: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTNKIT_")}
    paths = [pythonpath, os.environ.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return run_script(LOADER, job, env)


@pytest.mark.slow
def test_s1_s2_plugin_layer_loads_in_a_fresh_process_and_names_the_plugin_when_missing(
    plugin, tmp_path
):
    """S1: saved here, loaded in a new process that only imports attnkit (safe mode, no custom
    objects): equal config, bit-identical outputs, for a fake plugin's spec and built-ins.
    S2: the same file where the plugin is not installed: MissingPluginError naming the
    distribution, the saved version and the pip command."""
    specs = {
        "plugin": "fakecos(temperature=0.5)+causal",
        "plugin_pooled": "fakecos+local3+last(units=3)",
        "builtin": "additive+local3",
    }
    x = np.random.RandomState(0).randn(3, 6, 4).astype("float32")
    np.save(tmp_path / "x.npy", x)
    expected = {}
    for name, spec in specs.items():
        model = _model(spec)
        model.save(tmp_path / f"{name}.keras")
        expected[name] = (
            ops.convert_to_numpy(model(x)),
            json.loads(json.dumps(model.get_layer("attn").get_config())),
        )
    assert expected["plugin"][1]["plugins"] == {"fakecos": "attnkit-fakecos==1.2.0"}
    job = {"folder": str(tmp_path), "x": str(tmp_path / "x.npy"), "models": list(specs)}

    with_plugin = _run_loader(job, str(plugin))
    for name in specs:
        assert "error" not in with_plugin[name], with_plugin[name]
        assert with_plugin[name]["config"] == expected[name][1]
        got = np.load(tmp_path / f"{name}.child.npy")
        np.testing.assert_array_equal(got, expected[name][0], strict=True)

    without = _run_loader(job, None)
    assert "error" not in without["builtin"]
    for name in ("plugin", "plugin_pooled"):
        assert without[name]["error"] == "MissingPluginError", without[name]
        message = without[name]["message"]
        assert "attnkit-fakecos" in message and "1.2.0" in message
        assert "pip install 'attnkit-fakecos>=1.2.0'" in message


def test_s2_missing_plugin_in_this_process(plugin, tmp_path, monkeypatch):
    """The in-process version of S2 (fast): save with the plugin, load with a registry that
    does not have it."""
    _model("fakecos+causal").save(tmp_path / "m.keras")
    monkeypatch.setattr(registry_module, "_default", Registry(blocked=["attnkit-fakecos"]))
    with pytest.raises(MissingPluginError) as info:
        keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    message = str(info.value)
    assert "component 'fakecos'" in message
    assert "attnkit-fakecos" in message and "saved with version 1.2.0" in message
    assert "pip install 'attnkit-fakecos>=1.2.0'" in message


# -- S4: attnkit's name in Keras' serializable registry ----------------------------------------


def test_s4_attnkit_owns_its_keras_name_and_components_stay_out_of_it():
    assert keras.saving.get_registered_object("attnkit>AttentionLayer") is AttentionLayer
    assert keras.saving.get_registered_name(AttentionLayer) == "attnkit>AttentionLayer"
    component_classes = {info.cls for info in attnkit.registry().components()}
    custom = keras.saving.get_custom_objects()
    assert component_classes.isdisjoint(custom.values())
    ours = {key: obj for key, obj in custom.items() if key.startswith("attnkit>")}
    assert ours == {"attnkit>AttentionLayer": AttentionLayer}


@pytest.fixture
def keras_name():
    """Put attnkit's Keras registration back after a test that takes it over."""
    custom = keras.saving.get_custom_objects()
    before = custom["attnkit>AttentionLayer"]
    yield
    custom["attnkit>AttentionLayer"] = before


def test_s4_another_object_under_attnkits_keras_name_is_refused_at_save(keras_name, tmp_path):
    layer = AttentionLayer("dot", name="attn")
    inputs = keras.Input((None, 4))
    model = keras.Model(inputs, layer(inputs))

    @keras.saving.register_keras_serializable(package="attnkit", name="AttentionLayer")
    class Hijack(keras.layers.Layer):
        pass

    for call in (layer.get_config, lambda: model.save(tmp_path / "m.keras")):
        with pytest.raises(KerasRegistrationError) as info:
            call()
        message = str(info.value)
        assert "attnkit>AttentionLayer" in message and "Hijack" in message
        assert __name__ in message  # the module that took the name
        assert "register_keras_serializable" in message
        assert isinstance(info.value, PluginConflictError)


def test_s4_a_subclass_under_attnkits_keras_name_is_refused_at_load(clean, keras_name):
    @keras.saving.register_keras_serializable(package="attnkit", name="AttentionLayer")
    class Hijack(AttentionLayer):
        pass

    with pytest.raises(KerasRegistrationError, match="Hijack"):
        keras.saving.load_model(clean, safe_mode=True)


def test_s4_reregistering_the_same_class_is_idempotent(keras_name, tmp_path):
    """Registering the layer class again, or a re-import of it (same module and name, as
    importlib.reload and IPython's autoreload make), is not a conflict."""
    keras.saving.register_keras_serializable(package="attnkit")(AttentionLayer)
    AttentionLayer("dot").get_config()
    reimported = type(
        "AttentionLayer", (AttentionLayer,), {"__module__": AttentionLayer.__module__}
    )
    reimported.__qualname__ = AttentionLayer.__qualname__
    keras.saving.register_keras_serializable(package="attnkit")(reimported)
    _model("dot+causal").save(tmp_path / "m.keras")
    keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)


def test_s4_reloading_the_builtin_modules_is_idempotent(tmp_path):
    """importlib.reload of the component modules raises nothing and leaves resolving, building
    and saving working (the reloaded classes are the registered ones re-imported)."""
    modules = (attnkit.scorers, attnkit.masks, attnkit.poolings)
    saved = [dict(vars(module)) for module in modules]
    try:
        for module in modules:
            importlib.reload(module)
        assert attnkit.resolve("additive+local3+last").canonical == "additive+local3+last"
        fresh = Registry(autoload=False)
        assert fresh.resolve("dot+causal").canonical == "dot+causal"
        reloaded = attnkit.Resolved.of(attnkit.scorers.Dot(), (attnkit.masks.Causal(),))
        _model(reloaded).save(tmp_path / "m.keras")
        loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
        assert loaded.get_layer("attn").spec == "dot+causal"
    finally:
        # Put the original classes back: the process-wide registry holds those.
        for module, namespace in zip(modules, saved, strict=True):
            vars(module).clear()
            vars(module).update(namespace)


# -- S5: save before and after the first call, load under every backend -------------------------

BACKENDS = ("tensorflow", "jax", "torch")


def _s5_models(tmp_path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Models saved before any eager call (built symbolically) and after one; their outputs."""
    expected = {}
    for i, spec in enumerate(["additive+local3", "gaussian+causal+weighted", "dense+gate"]):
        keras.utils.set_random_seed(i)
        inputs = keras.Input((x.shape[1] if "gate" in spec else None, x.shape[2]))
        model = keras.Model(inputs, AttentionLayer(spec, name="attn")(inputs))
        model.save(tmp_path / f"before{i}.keras")  # never called eagerly
        expected[f"before{i}"] = ops.convert_to_numpy(model(x))
        model.save(tmp_path / f"after{i}.keras")
        expected[f"after{i}"] = expected[f"before{i}"]
    return expected


def test_s5_saved_before_and_after_the_first_call_loads_in_this_backend(tmp_path):
    x = np.random.RandomState(0).randn(2, 7, 5).astype("float32")
    expected = _s5_models(tmp_path, x)
    for name, want in expected.items():
        with zipfile.ZipFile(tmp_path / f"{name}.keras") as archive:
            config = json.loads(archive.read("config.json"))
        assert attn(config)["build_config"]["input_shape"][-1] == 5  # weights restore from it
        model = keras.saving.load_model(tmp_path / f"{name}.keras", safe_mode=True)
        np.testing.assert_array_equal(ops.convert_to_numpy(model(x)), want, strict=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    "target", sorted(set(BACKENDS) - {keras.backend.backend()}), ids=lambda b: f"to-{b}"
)
def test_s5_saved_before_and_after_the_first_call_loads_under_another_backend(target, tmp_path):
    require_backend(target)
    x = np.random.RandomState(0).randn(2, 7, 5).astype("float32")
    expected = _s5_models(tmp_path, x)
    outputs = load_elsewhere(target, tmp_path, x, expected)
    for name, want in expected.items():
        np.testing.assert_allclose(outputs[name], want, rtol=1e-5, atol=1e-5, err_msg=name)
