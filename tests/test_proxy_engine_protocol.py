"""The proxy engine is part of a protocol: in its fingerprint and reuse fields, passed to the proxies stage, and a
protocol saved before the field existed reads back as the engine that computed it (shared)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def test_engine_field_fingerprint_reuse_fields_and_validation():
    from robustbench_nas.pipelines import get_protocol
    from robustbench_nas.pipelines.runner import STAGE_FIELDS

    tiny = get_protocol("tiny")
    assert tiny.proxy_engine == "fast"
    assert tiny.replace(proxy_engine="shared").fingerprint() != tiny.fingerprint()
    assert "proxy_engine" in STAGE_FIELDS["proxies"]
    # the shipped table was computed by the shared engine (bit for bit the reference): its protocols say so
    assert get_protocol("nb201-proxies").proxy_engine == "shared" == get_protocol("nb201-proxies-seeds").proxy_engine
    with pytest.raises(ValueError, match="proxy_engine 'fastest' unknown; known: fast, shared, separate"):
        tiny.replace(proxy_engine="fastest")


def test_protocol_saved_before_the_field_reads_back_as_shared():
    from robustbench_nas.pipelines import ProtocolConfig, get_protocol

    saved = get_protocol("tiny").to_dict()
    assert saved.pop("proxy_engine") == "fast"
    assert ProtocolConfig.from_dict(saved).proxy_engine == "shared"
    assert ProtocolConfig.from_dict(get_protocol("tiny").to_dict()) == get_protocol("tiny")


@pytest.mark.parametrize("engine", ["fast", "shared"])
def test_proxies_stage_passes_the_protocols_engine(monkeypatch, tmp_path: Path, engine: str):
    import robustbench_nas.proxies as proxies
    from robustbench_nas.pipelines import get_protocol
    from robustbench_nas.pipelines.stages import StageContext, get_stage

    seen = {}

    def fake(arch, x, y, names, **kw):
        seen.update(kw)
        return {n: 1.0 for n in names}

    monkeypatch.setattr(proxies, "compute_proxies", fake)
    p = get_protocol("tiny").replace(proxies=("params",), proxy_images=16, proxy_engine=engine)
    space = p.space()
    ctx = StageContext(protocol=p, uid=int(space.unique_indices()[0]), arch_str=space.arch_str(space.unique_indices()[0]),
                       seed=0, store_path=tmp_path / "s.zarr", device=torch.device("cpu"))
    out = get_stage("proxies").fn(ctx)
    assert seen["engine"] == engine and out["proxy_value"].tolist() == [1.0]
