"""The one TensorRT builder, exercised on the CPU against a stand-in ``tensorrt`` module that records what the
builder asks of TensorRT's documented Python API (Builder, OnnxParser, optimisation profile, timing cache).

What these tests show without TensorRT: ``export --format tensorrt`` and ``--backend tensorrt`` build through
one function into one cache with one default batch, so an engine ``export`` built is the one the backend loads;
a morph DFM's ``morph_value:0`` (a float shape input TensorRT cannot take) is folded into the graph, and the
folded graph computes what the original does with that input fed (ONNX Runtime on the CPU). Whether TensorRT
itself builds and runs these engines is the ``gpu`` tests' job (tests/test_backends_gpu.py).
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from realtime_swap.errors import ConfigError
from realtime_swap.infer import tensorrt_build
from realtime_swap.infer.tensorrt_build import DEFAULT_MAX_BATCH, build_engine, fold_inputs, read_folded
from realtime_swap.swap.dfm_io import DFM_INPUT, DFM_MORPH
from realtime_swap.swap.synthetic import build_dfm_model


class _Tensor:
    def __init__(self, name: str, shape: tuple[int, ...], is_shape_tensor: bool) -> None:
        self.name, self.shape, self.is_shape_tensor = name, shape, is_shape_tensor


class _Network:
    def __init__(self) -> None:
        self.inputs: list[_Tensor] = []

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, i: int) -> _Tensor:
        return self.inputs[i]


class _Parser:
    """Reads the graph's inputs as TensorRT's parser would: dynamic dims -1; a float input that sizes a
    slice (DFM's morph factor) is a shape tensor."""

    num_errors = 0

    def __init__(self, network: _Network, logger: object) -> None:
        self.network = network

    def parse(self, data: bytes) -> bool:
        model = onnx.load_from_string(data)
        initialized = {t.name for t in model.graph.initializer}
        for value in model.graph.input:
            if value.name in initialized:
                continue
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim)
            self.network.inputs.append(_Tensor(value.name, dims, value.name == DFM_MORPH))
        FakeTensorRT.parsed.append(data)
        return True


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, name: str, low: tuple[int, ...], opt: tuple[int, ...], high: tuple[int, ...]) -> None:
        self.shapes[name] = (tuple(low), tuple(opt), tuple(high))


class _TimingCache:
    def serialize(self) -> bytes:
        return b"timing"


class _Config:
    def __init__(self) -> None:
        self.flags: list[str] = []
        self.profiles: list[_Profile] = []

    def set_memory_pool_limit(self, pool: str, size: int) -> None:
        assert pool == "WORKSPACE" and size > 0

    def set_flag(self, flag: str) -> None:
        self.flags.append(flag)

    def create_timing_cache(self, data: bytes) -> _TimingCache:
        return _TimingCache()

    def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> None:
        assert not ignore_mismatch

    def get_timing_cache(self) -> _TimingCache:
        return _TimingCache()

    def add_optimization_profile(self, profile: _Profile) -> None:
        self.profiles.append(profile)


class _Builder:
    def __init__(self, logger: object) -> None:
        pass

    def create_network(self, flags: int) -> _Network:
        return _Network()

    def create_optimization_profile(self) -> _Profile:
        return _Profile()

    def create_builder_config(self) -> _Config:
        return _Config()

    def build_serialized_network(self, network: _Network, config: _Config) -> bytes:
        FakeTensorRT.builds.append((network, config))
        return json.dumps({"profiles": [p.shapes for p in config.profiles], "flags": config.flags}).encode()


class FakeTensorRT(types.ModuleType):
    parsed: ClassVar[list[bytes]] = []
    builds: ClassVar[list[tuple[_Network, _Config]]] = []

    def __init__(self) -> None:
        super().__init__("tensorrt")
        self.__version__ = "10.9.0"
        self.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
        self.Builder = _Builder
        self.OnnxParser = _Parser
        self.BuilderFlag = types.SimpleNamespace(FP16="FP16")
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeTensorRT:
    fake = FakeTensorRT()
    FakeTensorRT.parsed, FakeTensorRT.builds = [], []
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(tensorrt_build, "gpu_name", lambda device=0: "NVIDIA H200")
    monkeypatch.setenv("REALTIME_SWAP_CACHE", str(tmp_path / "cache"))
    return fake


def _write(path: Path, **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build_dfm_model(32, width=8, ae_dims=32, **kwargs))
    return path


def test_an_engine_export_built_is_the_one_backend_tensorrt_loads(
    fake_trt: FakeTensorRT, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from export import command
    from export.formats import ExportFormat
    from realtime_swap.infer import tensorrt_runtime
    from realtime_swap.infer.session import Backend
    from realtime_swap.swap import backends

    def fake_export(checkpoint: Path, out: Path, **kwargs: Any) -> Any:
        return types.SimpleNamespace(path=_write(Path(out)))

    state = types.SimpleNamespace(
        model_config=types.SimpleNamespace(arch=types.SimpleNamespace(value="df"), resolution=32)
    )
    monkeypatch.setattr("export.onnx_export.export_onnx", fake_export)
    monkeypatch.setattr("realtime_swap.train.checkpoint.read_state", lambda folder: state)
    outcome = command.export_checkpoint(
        tmp_path / "ckpt", ExportFormat.TENSORRT, tmp_path / "out" / "m.engine", fp16=True
    )
    assert outcome.engine_cached is False and outcome.artefact.is_file() and len(fake_trt.builds) == 1

    loaded: list[tuple[Path, dict[str, float]]] = []

    class Runner:
        def __init__(self, engine: Path, folded: dict[str, float] | None = None) -> None:
            loaded.append((Path(engine), dict(folded or {})))

    monkeypatch.setattr(tensorrt_runtime, "TensorRTRunner", Runner)
    monkeypatch.setattr(backends, "unavailable_reason", lambda backend, engine_file=False: None)
    backends.open_runner(tmp_path / "out" / "m.onnx", Backend.TENSORRT, backends.BackendOptions())
    assert len(fake_trt.builds) == 1  # no second build: the cache entry export made
    ((engine, folded),) = loaded
    assert engine.parent == tmp_path / "cache" / "trt-native" and engine.read_bytes() == outcome.artefact.read_bytes()
    assert folded == {}
    _, config = fake_trt.builds[0]
    (profile,) = config.profiles
    assert profile.shapes[DFM_INPUT] == ((1, 32, 32, 3), (1, 32, 32, 3), (DEFAULT_MAX_BATCH, 32, 32, 3))
    assert config.flags == ["FP16"] and list(
        (tmp_path / "cache" / "trt-native").glob("timing-nvidia-h200-trt10.9.0.cache")
    )


def test_a_morph_dfm_is_built_with_its_morph_factor_folded_in(fake_trt: FakeTensorRT, tmp_path: Path) -> None:
    model = _write(tmp_path / "amp.onnx", morph=True)
    first = build_engine(model, morph=0.6, max_batch=4)
    assert first.folded == {DFM_MORPH: pytest.approx(0.6)} and read_folded(first.engine) == first.folded
    ((network, config),) = fake_trt.builds
    assert [t.name for t in network.inputs] == [DFM_INPUT]  # no shape-tensor input left for TensorRT
    assert config.profiles[0].shapes[DFM_INPUT][2] == (4, 32, 32, 3)
    again = build_engine(model, morph=0.6, max_batch=4)
    other = build_engine(model, morph=0.3, max_batch=4)
    assert again.cached and again.engine == first.engine
    assert not other.cached and other.key != first.key and len(fake_trt.builds) == 2


def test_a_shape_tensor_input_the_builder_cannot_range_is_refused(
    fake_trt: FakeTensorRT, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from realtime_swap.errors import ModelError

    monkeypatch.setattr(tensorrt_build, "fold_inputs", lambda data, values: data)  # as the two old builders did
    with pytest.raises(ModelError, match=r"'morph_value:0' .* is a shape tensor"):
        build_engine(_write(tmp_path / "amp.onnx", morph=True))


def test_folding_the_morph_factor_computes_what_feeding_it_does(tmp_path: Path) -> None:
    data = build_dfm_model(32, width=8, ae_dims=32, morph=True)
    crops = np.random.default_rng(0).random((2, 32, 32, 3), np.float32)
    fed = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    folded = ort.InferenceSession(fold_inputs(data, {DFM_MORPH: 0.6}), providers=["CPUExecutionProvider"])
    assert [i.name for i in folded.get_inputs()] == [DFM_INPUT]
    want = fed.run(None, {DFM_INPUT: crops, DFM_MORPH: np.array([0.6], np.float32)})
    got = folded.run(None, {DFM_INPUT: crops})
    other = fed.run(None, {DFM_INPUT: crops, DFM_MORPH: np.array([0.2], np.float32)})
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)
    assert any(not np.allclose(w, o) for w, o in zip(want, other, strict=True))  # the factor does matter


def test_without_tensorrt_the_builder_gives_the_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails as where it is not installed
    with pytest.raises(ConfigError, match=r"pip install 'realtime_swap\[trt\]'"):
        build_engine(_write(tmp_path / "m.onnx"))
