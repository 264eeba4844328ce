#!/usr/bin/env python3
"""Validates a data contract (YAML) against the Open Data Contract Standard v3.

    python scripts/validate_contract.py products/<p>/contract.yaml

Two independent checks, both from the standard's own PyPI package
(open-data-contract-standard): its JSON schema (schema.json, applied with jsonschema) and
its Pydantic model. Exit 0 when both accept the contract.
"""
import json
import sys
from importlib import resources

import jsonschema
import yaml
from open_data_contract_standard.model import OpenDataContractStandard


def main(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    schema = json.loads(resources.files("open_data_contract_standard").joinpath("schema.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    for e in errors:
        print(f"schema: {'/'.join(map(str, e.path)) or '(root)'}: {e.message}")
    try:
        OpenDataContractStandard.model_validate(doc)
    except Exception as e:  # pydantic.ValidationError
        print(f"model: {e}")
        return 1
    if errors:
        return 1
    print(f"{path}: valid against ODCS {doc.get('apiVersion')} (JSON schema and model)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
