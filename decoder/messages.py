"""Which protobuf message the decoder parses payloads as: contract v1 by default, or any message
of a descriptor set (``protoc --include_imports --descriptor_set_out``)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, FileDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from replica.schemas.errors import UsageError
from replica.schemas.hyperliquid.replica.v1.replica_pb2 import ReplicaCommand


@dataclass(frozen=True)
class PayloadMessage:
    """A message class, and a fingerprint of its schema: outputs decoded with one schema are
    stale for another."""

    cls: type[Message]
    fingerprint: str

    @property
    def descriptor(self) -> Descriptor:
        return message_descriptor(self.cls)


def message_descriptor(cls: type[Message]) -> Descriptor:
    """A message class's descriptor. The stubs type ``DESCRIPTOR`` as the Python or the upb
    class; at run time the upb one passes ``isinstance`` (protobuf's descriptor metaclass), so
    this narrows without a cast and fails loudly if that ever changes."""
    descriptor = cls.DESCRIPTOR
    if not isinstance(descriptor, Descriptor):
        raise TypeError(f"{cls.__name__}.DESCRIPTOR is a {type(descriptor).__name__}")
    return descriptor


def _files(file: FileDescriptor) -> list[FileDescriptor]:
    seen: dict[str, FileDescriptor] = {}
    pending = [file]
    while pending:
        current = pending.pop()
        if current.name not in seen:
            seen[current.name] = current
            pending.extend(current.dependencies)
    return [seen[name] for name in sorted(seen)]


def _fingerprint(descriptor: Descriptor) -> str:
    digest = hashlib.sha256(descriptor.full_name.encode())
    for file in _files(descriptor.file):
        digest.update(file.serialized_pb)
    return digest.hexdigest()[:16]


def contract_v1() -> PayloadMessage:
    return PayloadMessage(ReplicaCommand, _fingerprint(message_descriptor(ReplicaCommand)))


def from_descriptor_set(path: str | os.PathLike[str], name: str) -> PayloadMessage:
    """The message ``name`` (fully qualified) from a serialized ``FileDescriptorSet``."""
    path = Path(path)
    try:
        files = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes()).file
    except (OSError, DecodeError) as exc:
        raise UsageError(f"--schema {path}: not a readable FileDescriptorSet ({exc})") from None
    pool = descriptor_pool.DescriptorPool()
    try:
        for file in files:
            pool.Add(file)
        descriptor = pool.FindMessageTypeByName(name)
    except KeyError:
        known = sorted(
            f"{file.package}.{message.name}".lstrip(".")
            for file in files
            for message in file.message_type
        )
        raise UsageError(
            f"--message {name}: no such message in {path} (it has: {', '.join(known) or 'none'})"
        ) from None
    except TypeError as exc:  # a file whose imports the set does not include
        raise UsageError(
            f"--schema {path}: {exc}; build it with protoc --include_imports"
        ) from None
    return PayloadMessage(GetMessageClass(descriptor), _fingerprint(descriptor))
