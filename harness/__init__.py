"""phf-harness: pretraining language models with human preferences on DeepSpeed."""

import os as _os

# Set before `datasets` and `huggingface_hub` read them at import: `datasets` would otherwise send
# a download-count request to a host other than HF_ENDPOINT, and the Hub clients telemetry. Network
# use itself (HF_HUB_OFFLINE, HF_ENDPOINT) is left to the user's environment.
_os.environ.setdefault("HF_UPDATE_DOWNLOAD_COUNTS", "0")
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
