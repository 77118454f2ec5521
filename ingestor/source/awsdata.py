"""botocore's data files (service models, endpoints) loaded from where botocore loads them
(AWS_DATA_PATH, ~/.aws/models, then its own data), without two costs a client's start-up
pays for nothing:

- Before it loads a model, botocore checks that the service is one it knows by listing
  every service it knows: some 440 folders and their versions' folders (900 listdirs and
  2,600 stats, about 8 ms of CPU), twice per client (its model, its endpoint rules).
  `ModelLoader` looks in the one service's folder instead; an unknown service is refused
  as before, with botocore's list of the known ones.
- It parses every file into OrderedDicts, and that object hook is most of the parse:
  endpoints.json (1.2 MB, every region of every service) takes about 29 ms.
  `PlainJsonFiles` parses into plain dicts, in the file's order as every dict keeps it:
  about 11 ms.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import DataNotFoundError
from botocore.loaders import JSONFileLoader, Loader
from botocore.session import Session


def model_loader(session: Session) -> ModelLoader:
    """A `ModelLoader` with the search path botocore's `create_loader` gives its own."""
    paths = session.get_config_variable("data_path")  # AWS_DATA_PATH
    if paths is None:
        return ModelLoader()
    extra = [os.path.expanduser(os.path.expandvars(path)) for path in paths.split(os.pathsep)]
    return ModelLoader(extra_search_paths=extra)


class PlainJsonFiles(JSONFileLoader):  # type: ignore[misc]  # botocore ships no type hints
    """botocore's reader of its JSON files, parsing into plain dicts."""

    def _load_file(self, full_path: str, open_method: Any) -> Any:
        if not os.path.isfile(full_path):
            return None
        with open_method(full_path, "rb") as file:
            return json.loads(file.read().decode("utf-8"))


class ModelLoader(Loader):  # type: ignore[misc]  # botocore ships no type hints
    """botocore's loader, reading with `PlainJsonFiles` and checking a service by its
    own folder."""

    FILE_LOADER_CLASS = PlainJsonFiles

    def list_available_services(self, type_name: str) -> Any:
        return KnownServices(self, type_name)


class KnownServices:
    """What `Loader.list_available_services` answers, as `load_service_model` uses it:
    `in` looks for the service's own versions of the model (which the load then takes
    from botocore's cache); a listing of them all is botocore's full walk."""

    def __init__(self, loader: Loader, type_name: str) -> None:
        self._loader = loader
        self._type_name = type_name

    def __contains__(self, service: object) -> bool:
        if not isinstance(service, str):
            return False
        try:
            return bool(self._loader.list_api_versions(service, self._type_name))
        except DataNotFoundError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def _all(self) -> list[str]:
        listed: list[str] = Loader.list_available_services(self._loader, self._type_name)
        return listed
