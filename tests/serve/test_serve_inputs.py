"""c2s serve's input checks and settings, without Ray: every refusal names its field, its status and what was
expected; the settings refuse unknown or out-of-range keys; the config file for `serve deploy` is Serve's schema."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import yaml
from PIL import Image

from c2s.serve.inputs import BadInput, decode_base64, decode_image, parse_classes, parse_flag, parse_format
from c2s.serve.settings import ServeSettings

SETTINGS = ServeSettings(run="RUN", max_pixels=200 * 200, max_scores=96 * 96 * 30, max_classes=32,
                         max_name_chars=40)
SCALE = (96, 96)


def png(h: int, w: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def refused(fn, *args, **kwargs) -> BadInput:
    with pytest.raises(BadInput) as caught:
        fn(*args, **kwargs)
    return caught.value


def test_class_names_as_list_or_comma_string():
    assert parse_classes("cat, dog ,red cross", SETTINGS) == ["cat", "dog", "red cross"]
    assert parse_classes(["cat", " dog"], SETTINGS) == ["cat", "dog"]
    assert parse_classes(["cat,dog"], SETTINGS) == ["cat", "dog"]  # one multipart field holding a comma list


@pytest.mark.parametrize("value, message", [
    ("", "no class names given"),
    (" , ", "no class names given"),
    ([], "no class names given"),
    ("cat,,dog", r"positions \[1\]"),
    ("cat,dog,cat", "duplicated class names"),
    ("potted plant,potted_plant", "duplicated class names"),
    ("x" * 41, "longer than 40 characters"),
    (",".join(f"c{i}" for i in range(33)), "33 class names, over the limit of 32"),
    (3, "got int 3"),
    (["cat", 3], "got list"),
    ({"a": 1}, "got dict"),
])
def test_bad_class_names_are_400_naming_the_field(value, message):
    err = refused(parse_classes, value, SETTINGS)
    assert (err.status, err.field) == (400, "classes")
    assert err.body()["error"].startswith("classes: ")
    assert re.search(message, str(err)), str(err)
    assert "class names" in err.expected


def test_images_decode_and_the_limits_are_checked_from_the_header():
    image = decode_image(png(50, 70), SETTINGS, SCALE, 4)
    assert image.shape == (50, 70, 3) and image.dtype == np.uint8
    grey = io.BytesIO()
    Image.new("LA", (64, 64)).save(grey, format="PNG")  # any mode comes back RGB
    assert decode_image(grey.getvalue(), SETTINGS, SCALE, 4).shape == (64, 64, 3)
    flat = io.BytesIO()
    Image.new("RGB", (300, 300)).save(flat, format="PNG")  # 1 KB of file, 90,000 pixels
    err = refused(decode_image, flat.getvalue(), SETTINGS, SCALE, 4)
    assert (err.status, err.field) == (413, "image") and "300x300 = 90000 pixels" in str(err)
    err = refused(decode_image, png(96, 96), SETTINGS, SCALE, 31)
    assert err.status == 413 and "31 classes" in str(err) and "fewer classes" in err.expected
    err = refused(decode_image, png(20, 190), SETTINGS, SCALE, 4)  # 20x190 -> 10x96 at eval_scale 96
    assert (err.status, err.field) == (400, "image") and "narrower than 32 px" in str(err)


@pytest.mark.parametrize("data, message", [
    (b"", "the file is empty"),
    (b"hello, not an image", "not an image PIL can read"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not an image PIL can read"),
])
def test_undecodable_bytes_are_400(data, message):
    err = refused(decode_image, data, SETTINGS, SCALE, 4)
    assert (err.status, err.field) == (400, "image") and message in str(err)
    assert "BytesIO" not in str(err)  # the message names the problem, not Python's objects


def test_a_truncated_image_is_400_after_its_header_passed():
    data = png(64, 64)
    err = refused(decode_image, data[: len(data) // 2], SETTINGS, SCALE, 4)
    assert (err.status, err.field) == (400, "image") and "truncated or corrupt" in str(err)


def test_base64_plain_or_data_url():
    data = png(8, 8)
    assert decode_base64(base64.b64encode(data).decode()) == data
    assert decode_base64("data:image/png;base64," + base64.b64encode(data).decode()) == data
    for value, message in (("!!!", "not valid base64"), (12, "got int"), ("data:image/png,xyz", "not base64")):
        err = refused(decode_base64, value)
        assert (err.status, err.field) == (400, "image") and message in str(err)


def test_format_and_flags():
    assert parse_format(None) == "json" and parse_format("overlay") == "overlay"
    err = refused(parse_format, "jpeg")
    assert (err.field, err.expected) == ("format", "json or png or overlay")
    assert parse_flag("true", "include_overlay") and not parse_flag(None, "include_overlay")
    assert refused(parse_flag, "maybe", "include_overlay").field == "include_overlay"


def test_settings_refuse_unknown_and_out_of_range_keys():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="max_batch_sise"):
        ServeSettings(run="r", max_batch_sise=4)
    with pytest.raises(ValidationError, match="max_batch_size"):
        ServeSettings(run="r", max_batch_size=0)
    s = ServeSettings(run="r", max_batch_size=4)
    assert s.batching and s.ongoing_requests == 8 and not ServeSettings(run="r", max_batch_size=1).batching


def test_cli_options_out_of_range_name_the_option():
    from c2s.serve.run import _parser, settings_from_args
    from c2s.serve.settings import ServeError

    with pytest.raises(ServeError, match=r"--num-cpus: Input should be greater than 0 \(got 0.0\)"):
        settings_from_args(_parser().parse_args(["RUN", "--num-cpus", "0"]))


def test_written_config_is_serve_s_schema_and_its_args_build_the_settings(tmp_path):
    """`c2s serve --write-config`: Ray's ServeDeploySchema accepts it; its args are ServeSettings fields."""
    from ray.serve.schema import ServeDeploySchema

    from c2s.serve.run import main

    path = tmp_path / "serve.yaml"
    assert main(["/shared/runs/toy", "--replicas", "3", "--num-gpus", "0.5", "--max-batch-size", "16",
                 "--host", "0.0.0.0", "--write-config", str(path)]) == 0
    config = yaml.safe_load(path.read_text())
    schema = ServeDeploySchema.model_validate(config)
    app = schema.applications[0]
    assert app.import_path == "c2s.serve.app:build" and schema.http_options.host == "0.0.0.0"
    deployment = config["applications"][0]["deployments"][0]
    assert deployment["num_replicas"] == 3 and deployment["ray_actor_options"]["num_gpus"] == 0.5
    settings = ServeSettings.model_validate(app.args)
    assert settings.run == "/shared/runs/toy" and settings.max_batch_size == 16


def test_the_repository_s_serve_yaml_is_serve_s_schema():
    from pathlib import Path

    from ray.serve.schema import ServeDeploySchema

    path = Path(__file__).resolve().parents[2] / "serve.yaml"
    schema = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    ServeSettings.model_validate(schema.applications[0].args)


def test_c2s_serve_refuses_a_missing_run_and_a_taken_port_by_name(tmp_path, capsys):
    """Before Ray starts: one line on stderr, exit 2 (c2s.cli's user errors)."""
    import socket

    from c2s.cli import main
    from c2s.serve.run import check_port_free
    from c2s.serve.settings import ServeError

    assert main(["serve", str(tmp_path / "no_run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("c2s serve: error: ") and "no_run" in err and "Traceback" not in err
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServeError, match=f"--host 127.0.0.1 --port {port}: cannot listen there"):
            check_port_free("127.0.0.1", port)
