"""SIP core (sans-I/O): message model and codec, transactions, the endpoint façade.

Nothing here performs I/O or reads a clock: bytes and ``now`` go in, events and bytes come
out (see :mod:`.core`). The public API of every module is re-exported here.
"""

from .address import RELIABLE, Transport, TransportAddress
from .build import DIALOG_CREATING_METHODS, default_reason, make_request, make_response
from .core import SipEndpoint
from .errors import LocalSipError, RemoteSipError, SipError
from .events import (
    MessageRejected,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTimedOut,
    TransportFailed,
)
from .grammar import (
    AbsoluteUri,
    CSeq,
    NameAddr,
    Params,
    SipUri,
    TelUri,
    Uri,
    Via,
    format_params,
    is_token,
    is_valid_call_id,
    join_values,
    parse_any_uri,
    parse_cseq,
    parse_delta_seconds,
    parse_max_forwards,
    parse_name_addr,
    parse_name_addr_list,
    parse_params,
    parse_sip_date,
    parse_sip_uri,
    parse_uri,
    parse_via,
    parse_vias,
    quote_string,
    split_list,
    unquote_string,
    uri_equal,
)
from .ids import MAGIC_COOKIE, IdGenerator, RandomIds
from .message import (
    MULTI_VALUE_HEADERS,
    REASON_PHRASES,
    Headers,
    Message,
    Request,
    Response,
    canonical_name,
    serialize,
    split_header_values,
)
from .options import GATEWAY_CAPABILITIES, Capabilities, accepts, options_response
from .parser import (
    KNOWN_METHODS,
    MAX_BODY_BYTES,
    MAX_HEADER_BLOCK_BYTES,
    MAX_HEADER_COUNT,
    PONG,
    KeepAlive,
    SipParseError,
    StreamFramer,
    is_keepalive,
    parse_message,
)
from .timers import Timers
from .transaction import Action, Transaction, TxInput, TxKind, TxState, render_tables
from .transaction_layer import (
    INVITE_TU_DEADLINE,
    MAX_TRANSACTIONS,
    NON_INVITE_TU_DEADLINE,
    OVERLOAD_RETRY_AFTER,
    EndpointConfig,
    TransactionLayer,
    build_ack,
    build_cancel,
    response_target,
)

__all__ = [
    # address
    "RELIABLE",
    "Transport",
    "TransportAddress",
    # build
    "DIALOG_CREATING_METHODS",
    "default_reason",
    "make_request",
    "make_response",
    # core
    "SipEndpoint",
    "EndpointConfig",
    # errors
    "LocalSipError",
    "RemoteSipError",
    "SipError",
    # events
    "MessageRejected",
    "RequestReceived",
    "ResponseReceived",
    "SipEvent",
    "TransactionTimedOut",
    "TransportFailed",
    # grammar
    "AbsoluteUri",
    "CSeq",
    "NameAddr",
    "Params",
    "SipUri",
    "TelUri",
    "Uri",
    "Via",
    "format_params",
    "is_token",
    "is_valid_call_id",
    "join_values",
    "parse_any_uri",
    "parse_cseq",
    "parse_delta_seconds",
    "parse_max_forwards",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_params",
    "parse_sip_date",
    "parse_sip_uri",
    "parse_uri",
    "parse_via",
    "parse_vias",
    "quote_string",
    "split_list",
    "unquote_string",
    "uri_equal",
    # ids
    "MAGIC_COOKIE",
    "IdGenerator",
    "RandomIds",
    # message
    "MULTI_VALUE_HEADERS",
    "REASON_PHRASES",
    "Headers",
    "Message",
    "Request",
    "Response",
    "canonical_name",
    "serialize",
    "split_header_values",
    # options
    "GATEWAY_CAPABILITIES",
    "Capabilities",
    "accepts",
    "options_response",
    # parser
    "KNOWN_METHODS",
    "MAX_BODY_BYTES",
    "MAX_HEADER_BLOCK_BYTES",
    "MAX_HEADER_COUNT",
    "PONG",
    "KeepAlive",
    "SipParseError",
    "StreamFramer",
    "is_keepalive",
    "parse_message",
    # timers
    "Timers",
    # transaction
    "Action",
    "Transaction",
    "TxInput",
    "TxKind",
    "TxState",
    "render_tables",
    # transaction layer
    "INVITE_TU_DEADLINE",
    "MAX_TRANSACTIONS",
    "NON_INVITE_TU_DEADLINE",
    "OVERLOAD_RETRY_AFTER",
    "TransactionLayer",
    "build_ack",
    "build_cancel",
    "response_target",
]
