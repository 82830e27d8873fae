"""pipeline-tools: CI/CD for ML model services shipped as container images to AWS."""

__version__ = "0.1.0"
