from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StartLoginRequest(_message.Message):
    __slots__ = ("login", "redirect_uri")
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URI_FIELD_NUMBER: _ClassVar[int]
    login: str
    redirect_uri: str
    def __init__(self, login: _Optional[str] = ..., redirect_uri: _Optional[str] = ...) -> None: ...

class StartLoginResponse(_message.Message):
    __slots__ = ("authorize_url", "state", "redirect_uri", "expires_in")
    AUTHORIZE_URL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URI_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    authorize_url: str
    state: str
    redirect_uri: str
    expires_in: int
    def __init__(self, authorize_url: _Optional[str] = ..., state: _Optional[str] = ..., redirect_uri: _Optional[str] = ..., expires_in: _Optional[int] = ...) -> None: ...

class FinishLoginRequest(_message.Message):
    __slots__ = ("login", "code", "state", "pasted")
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PASTED_FIELD_NUMBER: _ClassVar[int]
    login: str
    code: str
    state: str
    pasted: str
    def __init__(self, login: _Optional[str] = ..., code: _Optional[str] = ..., state: _Optional[str] = ..., pasted: _Optional[str] = ...) -> None: ...

class StartDeviceLoginRequest(_message.Message):
    __slots__ = ("login",)
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    login: str
    def __init__(self, login: _Optional[str] = ...) -> None: ...

class DeviceLogin(_message.Message):
    __slots__ = ("verification_uri", "user_code", "expires_in", "interval", "id")
    VERIFICATION_URI_FIELD_NUMBER: _ClassVar[int]
    USER_CODE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    verification_uri: str
    user_code: str
    expires_in: int
    interval: int
    id: str
    def __init__(self, verification_uri: _Optional[str] = ..., user_code: _Optional[str] = ..., expires_in: _Optional[int] = ..., interval: _Optional[int] = ..., id: _Optional[str] = ...) -> None: ...

class PollDeviceLoginRequest(_message.Message):
    __slots__ = ("login", "id")
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    login: str
    id: str
    def __init__(self, login: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class DeviceLoginStatus(_message.Message):
    __slots__ = ("pending", "interval", "id", "account")
    PENDING_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    pending: bool
    interval: int
    id: str
    account: Account
    def __init__(self, pending: _Optional[bool] = ..., interval: _Optional[int] = ..., id: _Optional[str] = ..., account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class CallbackRequest(_message.Message):
    __slots__ = ("code", "state", "error")
    CODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    code: str
    state: str
    error: str
    def __init__(self, code: _Optional[str] = ..., state: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class ListAccountsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AccountRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RemoveAccountResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("id", "login", "provider", "email", "plan", "expires_at", "status", "status_reason", "windows", "windows_at", "exhausted")
    ID_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASON_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_AT_FIELD_NUMBER: _ClassVar[int]
    EXHAUSTED_FIELD_NUMBER: _ClassVar[int]
    id: str
    login: str
    provider: str
    email: str
    plan: str
    expires_at: str
    status: str
    status_reason: str
    windows: _containers.RepeatedCompositeFieldContainer[Window]
    windows_at: str
    exhausted: bool
    def __init__(self, id: _Optional[str] = ..., login: _Optional[str] = ..., provider: _Optional[str] = ..., email: _Optional[str] = ..., plan: _Optional[str] = ..., expires_at: _Optional[str] = ..., status: _Optional[str] = ..., status_reason: _Optional[str] = ..., windows: _Optional[_Iterable[_Union[Window, _Mapping]]] = ..., windows_at: _Optional[str] = ..., exhausted: _Optional[bool] = ...) -> None: ...

class Window(_message.Message):
    __slots__ = ("name", "used", "resets_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    RESETS_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    used: float
    resets_at: str
    def __init__(self, name: _Optional[str] = ..., used: _Optional[float] = ..., resets_at: _Optional[str] = ...) -> None: ...

class AccountList(_message.Message):
    __slots__ = ("accounts",)
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[Account]
    def __init__(self, accounts: _Optional[_Iterable[_Union[Account, _Mapping]]] = ...) -> None: ...
