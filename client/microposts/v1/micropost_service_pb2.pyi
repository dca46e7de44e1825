from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from microposts.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateMicropostRequest(_message.Message):
    __slots__ = ("parent", "micropost", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    MICROPOST_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    micropost: _resources_pb2.Micropost
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., micropost: _Optional[_Union[_resources_pb2.Micropost, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetMicropostRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class BatchGetMicropostsRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchGetMicropostsResponse(_message.Message):
    __slots__ = ("microposts",)
    MICROPOSTS_FIELD_NUMBER: _ClassVar[int]
    microposts: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Micropost]
    def __init__(self, microposts: _Optional[_Iterable[_Union[_resources_pb2.Micropost, _Mapping]]] = ...) -> None: ...

class ListMicropostsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListMicropostsResponse(_message.Message):
    __slots__ = ("microposts", "next_page_token")
    MICROPOSTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    microposts: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Micropost]
    next_page_token: str
    def __init__(self, microposts: _Optional[_Iterable[_Union[_resources_pb2.Micropost, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateMicropostRequest(_message.Message):
    __slots__ = ("micropost", "update_mask")
    MICROPOST_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    micropost: _resources_pb2.Micropost
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, micropost: _Optional[_Union[_resources_pb2.Micropost, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteMicropostRequest(_message.Message):
    __slots__ = ("name", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    etag: str
    def __init__(self, name: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...
