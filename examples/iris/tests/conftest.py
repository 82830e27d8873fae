import sys
from pathlib import Path

# The service code sits one level up (/var/task in the image).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
