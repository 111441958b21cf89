"""Helm's own chart code (its Go SDK, through helm-python-sdk) for tests/it/deploy.rs.

    helm.py lint CHART VALUES_JSON
    helm.py render CHART VALUES_JSON RELEASE NAMESPACE

prints one JSON object: lint's report; or {"documents": [...]}, every rendered YAML
document; or {"error": "..."} when Helm refuses the values or a template fails.
"""

import json
import sys

import helm_python as helm
import yaml


def main() -> None:
    command, chart, values = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    try:
        if command == "lint":
            out = helm.lint(chart, values, strict=True, namespace="hookgate")
        else:
            release, namespace = sys.argv[4], sys.argv[5]
            manifests = helm.Chart.load(chart).render(
                values, name=release, namespace=namespace, is_install=True
            )
            documents = []
            for path, text in sorted(manifests.items()):
                if path.endswith(".yaml"):
                    documents += [d for d in yaml.safe_load_all(text) if d is not None]
            out = {"documents": documents}
    except helm.HelmError as error:
        out = {"error": str(error)}
    print(json.dumps(out))


main()
