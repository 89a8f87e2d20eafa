"""The sans-I/O core: messages, signing, multipart and WebSocket codecs, connection info.

Nothing here opens a socket or a file, reads a clock or starts a loop; every
function takes its inputs and returns its outputs, so all of it is tested with
literal bytes. It imports the standard library, orjson and kernelyard.errors.
"""

from kernelyard.wire.channel import MESSAGE_CHANNELS, Channel
from kernelyard.wire.codec import (
    DELIMITER,
    RawMessage,
    decode,
    encode,
    encode_parts,
    message_parts,
    parse,
    split,
)
from kernelyard.wire.connection import PORT_FIELDS, ConnectionInfo, Transport
from kernelyard.wire.frame import Frame, Frames
from kernelyard.wire.jsonutil import format_date, parse_date
from kernelyard.wire.message import (
    PROTOCOL_VERSION,
    Header,
    Message,
    MessageFactory,
    new_header,
    new_session_id,
)
from kernelyard.wire.protocol import (
    ClientProtocol,
    Dropped,
    Event,
    InputRequested,
    IOPubReady,
    KernelProtocol,
    Output,
    Received,
    Reply,
    Request,
    Unmatched,
)
from kernelyard.wire.signing import DEFAULT_SIGNATURE_SCHEME, ReplayGuard, Signer
from kernelyard.wire.websocket import (
    V1_SUBPROTOCOL,
    choose_subprotocol,
    client_frame,
    frame_parts,
    from_legacy,
    from_v1,
    legacy_from_parts,
    pack_v1,
    to_legacy,
    to_v1,
    unpack_v1,
)

__all__ = [
    "DEFAULT_SIGNATURE_SCHEME",
    "DELIMITER",
    "MESSAGE_CHANNELS",
    "PORT_FIELDS",
    "PROTOCOL_VERSION",
    "V1_SUBPROTOCOL",
    "Channel",
    "ClientProtocol",
    "ConnectionInfo",
    "Dropped",
    "Event",
    "Frame",
    "Frames",
    "Header",
    "IOPubReady",
    "InputRequested",
    "KernelProtocol",
    "Message",
    "MessageFactory",
    "Output",
    "RawMessage",
    "Received",
    "ReplayGuard",
    "Reply",
    "Request",
    "Signer",
    "Transport",
    "Unmatched",
    "choose_subprotocol",
    "client_frame",
    "decode",
    "encode",
    "encode_parts",
    "format_date",
    "frame_parts",
    "from_legacy",
    "from_v1",
    "legacy_from_parts",
    "message_parts",
    "new_header",
    "new_session_id",
    "pack_v1",
    "parse",
    "parse_date",
    "split",
    "to_legacy",
    "to_v1",
    "unpack_v1",
]
