"""pipeline-tools: CI/CD for ML model services shipped as container images to AWS."""

__version__ = "0.1.0"
# OWNER/REPO@SHA this package was released from (scripts/set_version.py --source, in the release workflow);
# `pt init`/`pt upgrade-pipelines` pin the workflows' toolkit action to it by default. Empty in a checkout.
__toolkit_ref__ = ""
