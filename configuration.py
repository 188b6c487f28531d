"""The one reader of config/: model-config.yaml, config.properties and training.yaml.

Every value a test, script or training step needs from the serving config (the archive's batch
size, the handler's pixel cap, the server's body limit and addresses) is read here, never copied
as a number, so a changed setting cannot leave a stale copy behind.

It is a top-level module that imports nothing of the project, so every layer may use it without
breaking the layering (model -> handler / training -> harness -> scripts / tests), and so may
deploy/nginx/proxy.py. The handler is the one exception by design: inside the archive it has
neither this module nor config/, and reads the archive's own copy of model-config.yaml from
TorchServe (`context.model_yaml_config`). Likewise the container's healthcheck runs in the image
with nothing of the repository beside it and parses config.properties itself.
"""
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent
MODEL_CONFIG = REPO / "config" / "model-config.yaml"
SERVER_CONFIG = REPO / "config" / "config.properties"
TRAINING_CONFIG = REPO / "config" / "training.yaml"


def model_config(path: Path = MODEL_CONFIG) -> dict:
    """A model-config.yaml (the shipped one unless `path` names another, e.g. an archive's copy)."""
    return _yaml(path)


def training_config(path: Path = TRAINING_CONFIG) -> dict:
    """The training recipe's defaults (`python -m training.train` flags override them)."""
    return _yaml(path)


def _yaml(path: Path) -> dict:
    """PyYAML is imported here, so that reading config.properties needs the standard library only."""
    import yaml

    return yaml.safe_load(Path(path).read_text())


def handler_settings(path: Path = MODEL_CONFIG) -> dict:
    """The `handler:` section of a model-config.yaml: what our handler reads at initialize."""
    return model_config(path)["handler"]


def server_properties(path: Path = SERVER_CONFIG, environ: Mapping[str, str] | None = None) -> dict:
    """key -> value of a TorchServe config.properties (comments and blank lines skipped). With
    `environ`, its TS_<KEY> variables override the file as TorchServe applies them, when the
    file sets enable_envvars_config."""
    properties = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            properties[key.strip()] = value.strip()
    if environ is not None and properties.get("enable_envvars_config") == "true":
        properties.update({key[3:].lower(): value for key, value in environ.items() if key.startswith("TS_")})
    return properties


def loaded_models(properties: Mapping[str, str]) -> dict[str, str]:
    """model name -> archive, for each model a TorchServe's config.properties (`properties`, as
    server_properties reads it) loads at start: "name=file.mar,..." (a bare "file.mar" is named
    after its file)."""
    archives = {}
    for entry in filter(None, properties.get("load_models", "").split(",")):
        name, _, archive = entry.strip().rpartition("=")
        archives[name or archive.removesuffix(".mar")] = archive
    return archives


def heavy_lanes(properties: Mapping[str, str], model_config: Path = MODEL_CONFIG) -> dict[str, str]:
    """model name -> the model name of its heavy lane, for each model `properties` loads from an
    archive it also loads as `handler.heavy_lane`: where nginx sends that model's costly requests
    (docs/reliability.md, "Two lanes"). Models without one are not listed."""
    archives = loaded_models(properties)
    heavy = handler_settings(model_config)["heavy_lane"]
    return {name: heavy for name, archive in archives.items() if name != heavy and archives.get(heavy) == archive}


def max_request_size(path: Path = SERVER_CONFIG) -> int:
    """The largest request body, in bytes, the server accepts (config.properties)."""
    return int(server_properties(path)["max_request_size"])

