"""A stand-in for ComfyUI 0.3.64, for tests of sdbatch's ComfyUI backend and for trying sdbatch
without a GPU.

It is a real server on one loopback port, HTTP and WebSocket (`/ws?clientId=`), that behaves as
the real ComfyUI 0.3.64 was recorded to (tests/data/real-comfyui; comfyui-api.md where nothing
was recorded): POST /prompt with the real validation and 400 bodies, a client-chosen
`prompt_id`, a FIFO queue run by one worker, the WebSocket messages in their real order and
only to the posting client_id (a second socket with that id takes its events), /history,
/queue (delete, clear), /interrupt, /view, /object_info with the real sampler and scheduler
lists, /models, /embeddings, /system_stats, /free, all also under /api/. It runs the nodes of
the text-to-image graph (CheckpointLoaderSimple, CLIPTextEncode, CLIPSetLastLayer, LoraLoader,
EmptyLatentImage, KSampler, KSamplerAdvanced, VAEDecode, VAEEncode, LoadImage, SaveImage,
PreviewImage) without a model: SaveImage writes seeded noise PNGs with the real file names and
`prompt`/`workflow` chunks, and the classic cache replays an identical prompt's OLD file names
without writing anything, as the real one does.

    with MockComfy(step_delay=0.05) as comfy:
        ...  # point a client at comfy.url and comfy.ws_url(client_id)
        comfy.inject(error_next=1)  # the next sampler fails with an out-of-memory error
        comfy.recorder.executions  # what ran, what was cached, which files were written

`python -m sdbatch.standin.comfyui --port 8188 [--step-delay S]` runs one from the shell; a test
steers such a process through `POST /mock/faults`, `POST /mock/drop_sockets` and reads
`GET /mock/log` (control.py).
"""

from __future__ import annotations

from sdbatch.standin.comfyui.catalog import Catalog
from sdbatch.standin.comfyui.comfy import MockComfy
from sdbatch.standin.comfyui.faults import FaultSettings
from sdbatch.standin.comfyui.records import Execution, LoggedRequest

__all__ = ["Catalog", "Execution", "FaultSettings", "LoggedRequest", "MockComfy"]
