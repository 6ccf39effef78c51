"""The Open Inference Protocol's request and response shapes for atento's one model.

In: one input ``text`` (BYTES, shape [N] or [N, 1]) as raw bytes (each element a 4-byte little-endian
length, then UTF-8) or as ``contents.bytes_contents``; request parameters (``PARAMETERS``) and the
requested outputs become ``EmbedOptions``. Out: ``OUTPUTS``, zero-padded to the longest text where a
tensor has a per-token axis (``token_count`` says how many positions of each text are real).
Every refusal is InvalidArgument naming the tensor or parameter (``inputs[0] "txt": unknown input``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from atento.inference import grpc_predict_v2_pb2 as kv
from atento.v1 import encoder_pb2 as pb

from .batcher import ItemOutput
from .bundle import ModelSpec
from .config import Settings
from .errors import FailedPrecondition, InvalidArgument
from .requests import AttentionSelection, EmbedOptions, indices
from .responses import NUMPY_DTYPE, selected_maps
from .tokenizer import Encoded

INPUT = "text"
EMBEDDING, TOKEN_EMBEDDINGS, TOKEN_COUNT, ATTENTION = "embedding", "token_embeddings", "token_count", "attention"
OUTPUTS = (EMBEDDING, TOKEN_EMBEDDINGS, TOKEN_COUNT, ATTENTION)  # the order they come back in
PER_TOKEN = (TOKEN_EMBEDDINGS, ATTENTION)
FLOAT_DATATYPES: dict[str, pb.DType] = {"FP32": pb.DTYPE_FLOAT32, "FP16": pb.DTYPE_FLOAT16}
DATATYPE_NAMES = {dtype: name for name, dtype in FLOAT_DATATYPES.items()}
# Request parameters: name -> (the InferParameter field it is read from, what it does). README lists them.
PARAMETERS: dict[str, tuple[str, str]] = {
    "output_datatype": ("string_param", "FP32 (default) or FP16: the datatype of every float output"),
    "pooling": ("string_param", "mean or cls; default: the model's own"),
    "normalize": ("bool_param", "unit-length embeddings; default: the model's own"),
    "truncate": ("bool_param", "cut texts longer than the model's maximum instead of refusing them"),
    "token_embeddings": ("bool_param", "also return token_embeddings (and token_count)"),
    "attention": ("bool_param", "also return attention maps (and token_count)"),
    "attention_layers": ("string_param", 'layers of the attention maps, e.g. "0,5"; default: all'),
    "attention_heads": ("string_param", 'heads of the attention maps, e.g. "3"; default: all'),
    "average_heads": ("bool_param", "average the selected heads into one map per layer"),
}
LENGTH_PREFIX = struct.Struct("<I")


def _field(index: int, name: str) -> str:
    return f'inputs[{index}] "{name}"'


def _parameter(parameters: Mapping[str, kv.InferParameter], name: str) -> bool | str | None:
    """The parameter's value, None when absent; InvalidArgument when it has the wrong type."""
    if name not in parameters:
        return None
    kind, _ = PARAMETERS[name]
    sent = parameters[name].WhichOneof("parameter_choice")
    if sent != kind:
        raise InvalidArgument(f'parameters["{name}"]', f"expected a {kind.removesuffix('_param')} value, got {sent}")
    value: bool | str = getattr(parameters[name], kind)
    return value


def _layer_or_head_list(text: str, name: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise InvalidArgument(f'parameters["{name}"]', f"{text!r} is not a comma-separated list of integers") from None


def decode_bytes(raw: bytes, count: int, field: str) -> list[bytes]:
    """Raw BYTES contents -> ``count`` elements; each is a 4-byte little-endian length, then the bytes."""
    view, offset = memoryview(raw), 0
    elements: list[bytes] = []
    while offset < len(view):
        if len(elements) == count:
            raise InvalidArgument(field, f"raw contents hold more than the {count} elements its shape says")
        if offset + LENGTH_PREFIX.size > len(view):
            raise InvalidArgument(
                field, f"element {len(elements)}: a length prefix needs 4 bytes, {len(view) - offset} left"
            )
        (size,) = LENGTH_PREFIX.unpack_from(view, offset)
        offset += LENGTH_PREFIX.size
        if offset + size > len(view):
            raise InvalidArgument(field, f"element {len(elements)}: {size} bytes announced, {len(view) - offset} left")
        elements.append(bytes(view[offset : offset + size]))
        offset += size
    if len(elements) != count:
        raise InvalidArgument(field, f"raw contents hold {len(elements)} elements, its shape says {count}")
    return elements


def input_texts(request: kv.ModelInferRequest, settings: Settings) -> list[str]:
    """The texts of the one input ``text``, checked for name, datatype, shape and encoding."""
    if len(request.inputs) != 1:
        raise InvalidArgument("inputs", f'{len(request.inputs)} inputs, expected one: "{INPUT}" (BYTES, shape [N])')
    tensor = request.inputs[0]
    field = _field(0, tensor.name)
    if tensor.name != INPUT:
        raise InvalidArgument(field, f'unknown input, expected "{INPUT}"')
    if tensor.datatype != "BYTES":
        raise InvalidArgument(field, f'datatype "{tensor.datatype}", expected "BYTES"')
    shape = list(tensor.shape)
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1) or shape[0] < 0:
        raise InvalidArgument(field, f"shape {shape}, expected [N] or [N, 1]")
    count = shape[0]
    if count > settings.max_texts_per_request:  # before decoding: the element list stays bounded
        raise InvalidArgument(field, f"{count} texts exceed the limit of {settings.max_texts_per_request} per request")
    if tensor.parameters:
        raise InvalidArgument(f"{field}.parameters", "input parameters are not supported (no shared memory)")
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1 or tensor.HasField("contents"):
            raise InvalidArgument("raw_input_contents", "expected one entry, for input 0, and no input `contents`")
        elements = decode_bytes(request.raw_input_contents[0], count, field)
    else:
        elements = list(tensor.contents.bytes_contents)
        if len(elements) != count:
            raise InvalidArgument(field, f"contents hold {len(elements)} bytes_contents, its shape says {count}")
    texts = []
    for i, element in enumerate(elements):
        try:
            texts.append(element.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise InvalidArgument(f"{field}[{i}]", f"not valid UTF-8 ({error.reason} at byte {error.start})") from None
    return texts


def returned_outputs(request: kv.ModelInferRequest) -> tuple[str, ...]:
    """Which outputs the response holds: those listed (none listed: ``embedding``), plus those the
    ``token_embeddings`` / ``attention`` parameters ask for, plus ``token_count`` with per-token outputs."""
    listed = []
    for i, output in enumerate(request.outputs):
        if output.name not in OUTPUTS:
            expected = ", ".join(f'"{name}"' for name in OUTPUTS)
            raise InvalidArgument(f'outputs[{i}] "{output.name}"', f"unknown output, expected one of {expected}")
        if output.parameters:
            raise InvalidArgument(f'outputs[{i}] "{output.name}".parameters', "output parameters are not supported")
        listed.append(output.name)
    wanted = set(listed) if listed else {EMBEDDING}
    for name in PER_TOKEN:
        if _parameter(request.parameters, name):
            wanted.add(name)
    if not listed and wanted & set(PER_TOKEN):
        wanted.add(TOKEN_COUNT)
    return tuple(name for name in OUTPUTS if name in wanted)


def _attention_selection(
    parameters: Mapping[str, kv.InferParameter], model: ModelSpec, maps_available: bool
) -> AttentionSelection:
    if not maps_available:
        raise FailedPrecondition("attention maps are off on this server (started with --no-attention-maps)")
    chosen = {}
    for name, count, what in (
        ("attention_layers", model.num_layers, "layer"),
        ("attention_heads", model.num_heads, "head"),
    ):
        text = _parameter(parameters, name)
        values = _layer_or_head_list(str(text), name) if text else []
        chosen[what] = indices(values, count, f'parameters["{name}"]', what)
    return AttentionSelection(chosen["layer"], chosen["head"], bool(_parameter(parameters, "average_heads")))


def infer_options(
    request: kv.ModelInferRequest, outputs: Sequence[str], model: ModelSpec, maps_available: bool
) -> EmbedOptions:
    """The request's parameters and outputs as the engine's options; unknown parameters are refused."""
    parameters = request.parameters
    for name in parameters:
        if name not in PARAMETERS:
            raise InvalidArgument(
                f'parameters["{name}"]', f"unknown parameter, expected one of {', '.join(PARAMETERS)}"
            )
    datatype = str(_parameter(parameters, "output_datatype") or "FP32")
    if datatype not in FLOAT_DATATYPES:
        raise InvalidArgument('parameters["output_datatype"]', f'"{datatype}", expected "FP32" or "FP16"')
    pooling = str(_parameter(parameters, "pooling") or model.pooling)
    if pooling not in ("mean", "cls"):
        raise InvalidArgument('parameters["pooling"]', f'"{pooling}", expected "mean" or "cls"')
    if ATTENTION in outputs:
        selection = _attention_selection(parameters, model, maps_available)
    elif {"attention_layers", "attention_heads", "average_heads"} & set(parameters):
        raise InvalidArgument('parameters["attention"]', "attention_layers/heads/average_heads need attention maps")
    else:
        selection = None
    normalize = _parameter(parameters, "normalize")
    return EmbedOptions(
        pooling=pooling if EMBEDDING in outputs else None,
        normalize=model.normalize if normalize is None else bool(normalize),
        token_embeddings=TOKEN_EMBEDDINGS in outputs,
        attention_selection=selection,
        dtype=FLOAT_DATATYPES[datatype],
        cut=bool(_parameter(parameters, "truncate")),
        tokens=False,  # the protocol has no place for token strings and offsets
    )


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str
    array: np.ndarray


def _padded(arrays: Sequence[np.ndarray], width: int) -> np.ndarray:
    """N per-text arrays with per-token axes of each text's length -> one array, zero-padded to ``width``."""
    first = arrays[0]
    if first.ndim == 2:  # token embeddings: (S_i, D) -> (N, width, D)
        out = np.zeros((len(arrays), width, first.shape[1]), first.dtype)
        for i, array in enumerate(arrays):
            out[i, : array.shape[0]] = array
        return out
    # attention maps: (L, H, S_i, S_i) -> (N, L, H, width, width)
    out = np.zeros((len(arrays), *first.shape[:2], width, width), first.dtype)
    for i, array in enumerate(arrays):
        out[i, :, :, : array.shape[2], : array.shape[3]] = array
    return out


def output_tensors(
    outputs: Sequence[str],
    encoded: Sequence[Encoded],
    computed: Sequence[ItemOutput],
    options: EmbedOptions,
    embeddings: Sequence[np.ndarray] | None,
) -> list[OutputTensor]:
    """The returned outputs as arrays in the wire datatype; per-token ones padded to the longest text.
    ``embeddings``: the sentence embeddings the engine made (pooling, Dense, Normalize), as gRPC sends them."""
    dtype, width = NUMPY_DTYPE[options.dtype], max(len(e) for e in encoded)
    tensors = []
    for name in outputs:
        if name == EMBEDDING:
            assert embeddings is not None, "the embedding output is asked for only with a pooling"
            array = np.stack(embeddings)  # (N, D)
        elif name == TOKEN_EMBEDDINGS:
            array = _padded([output.hidden for output in computed], width)  # (N, S, D)
        elif name == ATTENTION:
            assert options.attention_selection is not None
            maps = [
                selected_maps(o.attention_maps, options.attention_selection)
                for o in computed
                if o.attention_maps is not None
            ]
            array = _padded(maps, width)  # (N, layers, heads or 1, S, S)
        else:
            tensors.append(OutputTensor(name, "INT32", np.array([len(e) for e in encoded], dtype="<i4")))
            continue
        tensors.append(OutputTensor(name, DATATYPE_NAMES[options.dtype], array.astype(dtype, copy=False)))
    return tensors


def padded_bytes(outputs: Sequence[str], encoded: Sequence[Encoded], options: EmbedOptions, model: ModelSpec) -> int:
    """What the padded per-token outputs take: padding can exceed what ``check_response_size`` counted."""
    n, width, per_value = len(encoded), max(len(e) for e in encoded), NUMPY_DTYPE[options.dtype].itemsize
    total = n * model.hidden_size * per_value * (1 + (width if TOKEN_EMBEDDINGS in outputs else 0))
    if (selection := options.attention_selection) is not None:
        heads = 1 if selection.average_heads else len(selection.heads)
        total += n * len(selection.layers) * heads * width * width * per_value
    return total


def infer_response(
    request: kv.ModelInferRequest, model_name: str, version: str, tensors: Sequence[OutputTensor]
) -> kv.ModelInferResponse:
    response = kv.ModelInferResponse(model_name=model_name, model_version=version, id=request.id)
    for tensor in tensors:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.array.shape)
        response.raw_output_contents.append(tensor.array.tobytes())  # C order, little-endian
    return response


def tensor_metadata(
    model: ModelSpec,
) -> tuple[list[kv.ModelMetadataResponse.TensorMetadata], list[kv.ModelMetadataResponse.TensorMetadata]]:
    """ModelMetadata's inputs and outputs: -1 marks the texts, tokens and selectable layers/heads."""
    meta = kv.ModelMetadataResponse.TensorMetadata
    inputs = [meta(name=INPUT, datatype="BYTES", shape=[-1])]
    outputs = [
        meta(name=EMBEDDING, datatype="FP32", shape=[-1, model.hidden_size]),
        meta(name=TOKEN_EMBEDDINGS, datatype="FP32", shape=[-1, -1, model.hidden_size]),
        meta(name=TOKEN_COUNT, datatype="INT32", shape=[-1]),
        meta(name=ATTENTION, datatype="FP32", shape=[-1, -1, -1, -1, -1]),
    ]
    return inputs, outputs
