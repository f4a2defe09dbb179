"""ComfyUI's record of one prompt, read as the truth: `/history/{id}`, `/queue` and `/view`.

Entry points: `settle(entry) -> (images, error)` turns a history entry into the files to
download or the server's message (any `execution_error` or `execution_interrupted` among the
messages is a failure, whatever `status_str` says: comfyui-api.md C13); `rejection(answer)`
words a 400 from POST /prompt by node, input and message (`has_node_errors` tells a 200 that
is one); `where(queue, prompt_id)` says whether a prompt is still pending or running.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdbatch.backends.fetch import Answer
from sdbatch.backends.redact import redact, summarise

SHOWN = 300


def _text(value: Any) -> str:
    return redact(" ".join(str(value).split()))[:SHOWN]


def settle(
    entry: Mapping[str, Any], output_node: str
) -> tuple[list[Mapping[str, Any]], str | None]:
    """The images `output_node` saved, or the reason there are none."""
    status = entry.get("status")
    messages = status.get("messages", []) if isinstance(status, Mapping) else []
    for message in messages if isinstance(messages, list) else []:
        if not (isinstance(message, list) and len(message) == 2):
            continue
        kind, data = message
        data = data if isinstance(data, Mapping) else {}
        node = f"node {data.get('node_id')} ({data.get('node_type')})"
        if kind == "execution_error":
            return [], (
                f"ComfyUI failed at {node}: {_text(data.get('exception_type'))}: "
                f"{_text(data.get('exception_message'))}"
            )
        if kind == "execution_interrupted":
            return [], f"interrupted at {node}"
    if isinstance(status, Mapping) and status.get("status_str") not in (None, "success"):
        return [], f"ComfyUI says {_text(status.get('status_str'))} without a message"
    outputs = entry.get("outputs")
    saved = outputs.get(output_node) if isinstance(outputs, Mapping) else None
    images = saved.get("images") if isinstance(saved, Mapping) else None
    if not isinstance(images, list) or not all(isinstance(i, Mapping) for i in images):
        return [], f"ComfyUI reported no images for node {output_node}"
    return images, None


def rejection(answer: Answer) -> str:
    """POST /prompt's 400 (or a 200 with node_errors) in words: each node, input, message."""
    try:
        body = answer.json()
    except ValueError:
        return f"HTTP {answer.status_code}: {summarise(answer.content, answer.reason)}"
    if not isinstance(body, Mapping):
        return f"HTTP {answer.status_code}: {_text(body)}"
    parts = []
    node_errors = body.get("node_errors")
    for node_id, node in node_errors.items() if isinstance(node_errors, Mapping) else []:
        node = node if isinstance(node, Mapping) else {}
        for error in node.get("errors", []) if isinstance(node.get("errors"), list) else []:
            reason = error if isinstance(error, Mapping) else {}
            extra = reason.get("extra_info")
            name = extra.get("input_name") if isinstance(extra, Mapping) else None
            at = f"node {node_id} ({node.get('class_type')})" + (f".{name}" if name else "")
            parts.append(f"{at}: {_text(reason.get('message'))}: {_text(reason.get('details'))}")
    graph_error = body.get("error")
    if not parts and isinstance(graph_error, Mapping):
        message, details = graph_error.get("message"), graph_error.get("details")
        parts.append(f"{_text(message)} {_text(details or '')}".strip())
    return "ComfyUI refused the prompt: " + ("; ".join(parts) or f"HTTP {answer.status_code}")


def has_node_errors(answer: Answer) -> bool:
    """A 200 from POST /prompt can still carry `node_errors`: the prompt was refused."""
    try:
        body = answer.json()
    except ValueError:
        return False
    return isinstance(body, Mapping) and bool(body.get("node_errors"))


def where(queue: Any, prompt_id: str) -> str | None:
    """ "running", "pending" or None (in neither: finished, deleted or lost)."""
    if not isinstance(queue, Mapping):
        return None
    for state in ("running", "pending"):
        items = queue.get(f"queue_{state}")
        for item in items if isinstance(items, list) else []:
            if isinstance(item, list) and len(item) > 1 and item[1] == prompt_id:
                return state
    return None
