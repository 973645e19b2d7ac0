"""Files: uploads stored with their file_id, photo sizes as Telegram makes them, getFile and the
file download route.
"""

from __future__ import annotations

import secrets
import struct
from typing import Any

from .core import EmulatorCore, Files
from .errors import bad_request
from .params import Params
from .rules import PHOTO_SIDES
from .state import JSON, BotAccount, StoredFile


class FileStore(EmulatorCore):
    """Stored files, getFile and /file downloads."""

    def _new_file(self, data: bytes, folder: str, ext: str, **kw: Any) -> StoredFile:
        n = next(self._ids)
        stored = StoredFile(
            file_id=f"AgAC{secrets.token_urlsafe(24)}",
            file_unique_id=f"AQAD{secrets.token_urlsafe(8)}",
            data=data,
            file_path=f"{folder}/file_{n}.{ext}",
            **kw,
        )
        self._files[stored.file_id] = stored
        return stored

    def _store_photo(self, data: bytes) -> tuple[StoredFile, list[JSON]]:
        size = _image_size(data)
        if size is None:
            raise bad_request("IMAGE_PROCESS_FAILED")
        width, height = size
        stored = self._new_file(data, "photos", "jpg", mime_type="image/jpeg")
        sizes: list[JSON] = []
        longest = max(width, height)
        # Telegram stores several resized copies; every size here serves the original bytes.
        sides = [s for s in PHOTO_SIDES if s < longest] + [min(longest, 2560)]
        for side in sides:
            scale = side / longest
            file_id = stored.file_id if side == sides[-1] else f"{stored.file_id}_{side}"
            entry = {
                "file_id": file_id,
                "file_unique_id": f"{stored.file_unique_id}{side}",
                "width": max(1, round(width * scale)),
                "height": max(1, round(height * scale)),
                "file_size": max(1, round(len(data) * scale * scale)),
            }
            if file_id != stored.file_id:
                self._files[file_id] = stored
            sizes.append(entry)
        return stored, sizes

    def _store_document(
        self, data: bytes, file_name: str, mime_type: str
    ) -> tuple[StoredFile, JSON]:
        ext = file_name.rsplit(".", 1)[-1] if "." in file_name else "bin"
        stored = self._new_file(data, "documents", ext, file_name=file_name, mime_type=mime_type)
        document = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": len(data),
        }
        return stored, document

    def _upload(self, p: JSON, files: Files, field: str) -> tuple[str, bytes, str] | StoredFile:
        value = p.get(field)
        upload = files.get(field)
        if isinstance(value, str) and value.startswith("attach://"):
            upload = files.get(value.removeprefix("attach://"))
        if upload is not None:
            if not upload[1]:
                raise bad_request("file must be non-empty")
            return upload
        if value is None:
            raise bad_request(f"there is no {field} in the request")
        stored = self._files.get(str(value))
        if stored is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        return stored


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, GIF or JPEG, without decoding it."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD):
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return width, height
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            (length,) = struct.unpack(">H", data[i + 2 : i + 4])
            i += 2 + length
    return None


class FilesApi(Params, FileStore):
    """The Bot API's getFile."""

    async def _api_getFile(self, account: BotAccount, p: JSON, files: Files) -> JSON:
        file_id = self._opt_str(p, "file_id")
        stored = self._files.get(file_id or "")
        if stored is None:
            raise bad_request("invalid file_id")
        return {
            "file_id": file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }
