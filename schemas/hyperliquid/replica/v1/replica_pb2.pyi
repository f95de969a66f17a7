from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    BID: _ClassVar[Side]
    ASK: _ClassVar[Side]

class Tif(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIF_UNSPECIFIED: _ClassVar[Tif]
    GTC: _ClassVar[Tif]
    IOC: _ClassVar[Tif]
    ALO: _ClassVar[Tif]
SIDE_UNSPECIFIED: Side
BID: Side
ASK: Side
TIF_UNSPECIFIED: Tif
GTC: Tif
IOC: Tif
ALO: Tif

class Trigger(_message.Message):
    __slots__ = ("trigger_px", "is_market", "take_profit")
    TRIGGER_PX_FIELD_NUMBER: _ClassVar[int]
    IS_MARKET_FIELD_NUMBER: _ClassVar[int]
    TAKE_PROFIT_FIELD_NUMBER: _ClassVar[int]
    trigger_px: float
    is_market: bool
    take_profit: bool
    def __init__(self, trigger_px: _Optional[float] = ..., is_market: _Optional[bool] = ..., take_profit: _Optional[bool] = ...) -> None: ...

class OrderPlace(_message.Message):
    __slots__ = ("asset", "is_buy", "px", "sz", "reduce_only", "tif", "trigger", "cloid", "oid")
    ASSET_FIELD_NUMBER: _ClassVar[int]
    IS_BUY_FIELD_NUMBER: _ClassVar[int]
    PX_FIELD_NUMBER: _ClassVar[int]
    SZ_FIELD_NUMBER: _ClassVar[int]
    REDUCE_ONLY_FIELD_NUMBER: _ClassVar[int]
    TIF_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    CLOID_FIELD_NUMBER: _ClassVar[int]
    OID_FIELD_NUMBER: _ClassVar[int]
    asset: int
    is_buy: bool
    px: float
    sz: float
    reduce_only: bool
    tif: Tif
    trigger: Trigger
    cloid: bytes
    oid: int
    def __init__(self, asset: _Optional[int] = ..., is_buy: _Optional[bool] = ..., px: _Optional[float] = ..., sz: _Optional[float] = ..., reduce_only: _Optional[bool] = ..., tif: _Optional[_Union[Tif, str]] = ..., trigger: _Optional[_Union[Trigger, _Mapping]] = ..., cloid: _Optional[bytes] = ..., oid: _Optional[int] = ...) -> None: ...

class OrderCancel(_message.Message):
    __slots__ = ("asset", "oid", "cloid")
    ASSET_FIELD_NUMBER: _ClassVar[int]
    OID_FIELD_NUMBER: _ClassVar[int]
    CLOID_FIELD_NUMBER: _ClassVar[int]
    asset: int
    oid: int
    cloid: bytes
    def __init__(self, asset: _Optional[int] = ..., oid: _Optional[int] = ..., cloid: _Optional[bytes] = ...) -> None: ...

class CancelAll(_message.Message):
    __slots__ = ("assets",)
    ASSETS_FIELD_NUMBER: _ClassVar[int]
    assets: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, assets: _Optional[_Iterable[int]] = ...) -> None: ...

class Fill(_message.Message):
    __slots__ = ("asset", "px", "sz", "taker_side", "maker", "taker", "maker_oid", "taker_oid", "tid", "fee")
    ASSET_FIELD_NUMBER: _ClassVar[int]
    PX_FIELD_NUMBER: _ClassVar[int]
    SZ_FIELD_NUMBER: _ClassVar[int]
    TAKER_SIDE_FIELD_NUMBER: _ClassVar[int]
    MAKER_FIELD_NUMBER: _ClassVar[int]
    TAKER_FIELD_NUMBER: _ClassVar[int]
    MAKER_OID_FIELD_NUMBER: _ClassVar[int]
    TAKER_OID_FIELD_NUMBER: _ClassVar[int]
    TID_FIELD_NUMBER: _ClassVar[int]
    FEE_FIELD_NUMBER: _ClassVar[int]
    asset: int
    px: float
    sz: float
    taker_side: Side
    maker: bytes
    taker: bytes
    maker_oid: int
    taker_oid: int
    tid: int
    fee: float
    def __init__(self, asset: _Optional[int] = ..., px: _Optional[float] = ..., sz: _Optional[float] = ..., taker_side: _Optional[_Union[Side, str]] = ..., maker: _Optional[bytes] = ..., taker: _Optional[bytes] = ..., maker_oid: _Optional[int] = ..., taker_oid: _Optional[int] = ..., tid: _Optional[int] = ..., fee: _Optional[float] = ...) -> None: ...

class Liquidation(_message.Message):
    __slots__ = ("asset", "liquidated_user", "is_long", "sz", "mark_px", "insurance_fund_delta")
    ASSET_FIELD_NUMBER: _ClassVar[int]
    LIQUIDATED_USER_FIELD_NUMBER: _ClassVar[int]
    IS_LONG_FIELD_NUMBER: _ClassVar[int]
    SZ_FIELD_NUMBER: _ClassVar[int]
    MARK_PX_FIELD_NUMBER: _ClassVar[int]
    INSURANCE_FUND_DELTA_FIELD_NUMBER: _ClassVar[int]
    asset: int
    liquidated_user: bytes
    is_long: bool
    sz: float
    mark_px: float
    insurance_fund_delta: float
    def __init__(self, asset: _Optional[int] = ..., liquidated_user: _Optional[bytes] = ..., is_long: _Optional[bool] = ..., sz: _Optional[float] = ..., mark_px: _Optional[float] = ..., insurance_fund_delta: _Optional[float] = ...) -> None: ...

class FundingRate(_message.Message):
    __slots__ = ("asset", "rate", "premium")
    ASSET_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    PREMIUM_FIELD_NUMBER: _ClassVar[int]
    asset: int
    rate: float
    premium: float
    def __init__(self, asset: _Optional[int] = ..., rate: _Optional[float] = ..., premium: _Optional[float] = ...) -> None: ...

class FundingSettlement(_message.Message):
    __slots__ = ("rates",)
    RATES_FIELD_NUMBER: _ClassVar[int]
    rates: _containers.RepeatedCompositeFieldContainer[FundingRate]
    def __init__(self, rates: _Optional[_Iterable[_Union[FundingRate, _Mapping]]] = ...) -> None: ...

class OraclePrice(_message.Message):
    __slots__ = ("asset", "px")
    ASSET_FIELD_NUMBER: _ClassVar[int]
    PX_FIELD_NUMBER: _ClassVar[int]
    asset: int
    px: float
    def __init__(self, asset: _Optional[int] = ..., px: _Optional[float] = ...) -> None: ...

class OracleUpdate(_message.Message):
    __slots__ = ("validator", "prices")
    VALIDATOR_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    validator: bytes
    prices: _containers.RepeatedCompositeFieldContainer[OraclePrice]
    def __init__(self, validator: _Optional[bytes] = ..., prices: _Optional[_Iterable[_Union[OraclePrice, _Mapping]]] = ...) -> None: ...

class Withdrawal(_message.Message):
    __slots__ = ("destination", "amount_usd", "nonce")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_USD_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    destination: bytes
    amount_usd: float
    nonce: int
    def __init__(self, destination: _Optional[bytes] = ..., amount_usd: _Optional[float] = ..., nonce: _Optional[int] = ...) -> None: ...

class Deposit(_message.Message):
    __slots__ = ("depositor", "amount_usd", "eth_tx_hash")
    DEPOSITOR_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_USD_FIELD_NUMBER: _ClassVar[int]
    ETH_TX_HASH_FIELD_NUMBER: _ClassVar[int]
    depositor: bytes
    amount_usd: float
    eth_tx_hash: bytes
    def __init__(self, depositor: _Optional[bytes] = ..., amount_usd: _Optional[float] = ..., eth_tx_hash: _Optional[bytes] = ...) -> None: ...

class ReplicaCommand(_message.Message):
    __slots__ = ("block", "time_ms", "user", "order", "cancel", "cancel_all", "fill", "liquidation", "funding", "oracle", "withdrawal", "deposit")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ALL_FIELD_NUMBER: _ClassVar[int]
    FILL_FIELD_NUMBER: _ClassVar[int]
    LIQUIDATION_FIELD_NUMBER: _ClassVar[int]
    FUNDING_FIELD_NUMBER: _ClassVar[int]
    ORACLE_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWAL_FIELD_NUMBER: _ClassVar[int]
    DEPOSIT_FIELD_NUMBER: _ClassVar[int]
    block: int
    time_ms: int
    user: bytes
    order: OrderPlace
    cancel: OrderCancel
    cancel_all: CancelAll
    fill: Fill
    liquidation: Liquidation
    funding: FundingSettlement
    oracle: OracleUpdate
    withdrawal: Withdrawal
    deposit: Deposit
    def __init__(self, block: _Optional[int] = ..., time_ms: _Optional[int] = ..., user: _Optional[bytes] = ..., order: _Optional[_Union[OrderPlace, _Mapping]] = ..., cancel: _Optional[_Union[OrderCancel, _Mapping]] = ..., cancel_all: _Optional[_Union[CancelAll, _Mapping]] = ..., fill: _Optional[_Union[Fill, _Mapping]] = ..., liquidation: _Optional[_Union[Liquidation, _Mapping]] = ..., funding: _Optional[_Union[FundingSettlement, _Mapping]] = ..., oracle: _Optional[_Union[OracleUpdate, _Mapping]] = ..., withdrawal: _Optional[_Union[Withdrawal, _Mapping]] = ..., deposit: _Optional[_Union[Deposit, _Mapping]] = ...) -> None: ...
