"""Schema-level check of the Envoy configurations in deploy/envoy/ (no Envoy binary here).

Each file is parsed as YAML and then into Envoy's v3 `Bootstrap` message with the protobuf JSON
parser, using the descriptors of the `xds-protos` package (Envoy's data-plane API as compiled
by the gRPC project). That refuses any field name that does not exist, a value of the wrong
type or an unknown enum name, and resolves every `typed_config` by its `@type` (an extension
whose message is not in the API fails). It does not run Envoy's own validation rules
(protoc-gen-validate constraints such as required fields and ranges) or start a listener.

    python .ci/check-envoy.py deploy/envoy/*.yaml
"""

import importlib
import pkgutil
import sys

import envoy
import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from google.protobuf import json_format


def import_every_message_module():
    """Imports every generated module, so that any `@type` in a typed_config resolves."""
    count = 0
    for mod in pkgutil.walk_packages(envoy.__path__, "envoy."):
        if mod.name.endswith("_pb2"):
            try:
                importlib.import_module(mod.name)
                count += 1
            except ImportError:
                # A module that needs a dependency this package does not ship; an @type from
                # it then fails to resolve, which is reported below as an error.
                pass
    return count


def main(paths):
    if not paths:
        sys.exit("usage: check-envoy.py FILE.yaml...")
    modules = import_every_message_module()
    failed = False
    for path in paths:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        try:
            bootstrap = json_format.ParseDict(doc, bootstrap_pb2.Bootstrap())
        except json_format.ParseError as e:
            print(f"{path}: not a valid Envoy v3 Bootstrap: {e}", file=sys.stderr)
            failed = True
            continue
        res = bootstrap.static_resources
        print(
            f"{path}: Envoy v3 Bootstrap, {len(res.listeners)} listener(s), "
            f"{len(res.clusters)} cluster(s) ({modules} API modules loaded)"
        )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
