"""``/api/admin/datasets``: export rated conversations as a training dataset, list the
exports, download their files. Administrators only."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Response
from fastapi.responses import FileResponse

from chatgate.api_route import GatewayRoute
from chatgate.datasets import service, store
from chatgate.datasets.schemas import DatasetList, DatasetOut, DatasetRequest
from chatgate.deps import AdminUser, DbDep, StateDep
from chatgate.openapi_responses import ADMIN, errors

router = APIRouter(
    prefix="/api/admin/datasets", tags=["datasets"], responses=ADMIN, route_class=GatewayRoute
)

Version = Annotated[str, Path(pattern=store.VERSION_PATTERN, description="The dataset version")]
FileName = Literal["train.jsonl", "heldout.jsonl", "metadata.json"]
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "json": "application/json"}


@router.post("", status_code=201, responses=errors(400, 404, 413))
async def create_dataset(
    body: DatasetRequest, _admin: AdminUser, db: DbDep, state: StateDep
) -> DatasetOut:
    """Export the rated answers the filters select (scrubbed, deduplicated, split)."""
    metadata = await service.export(
        db, state.settings.data_dir, body.to_filter(), state.settings.training_default_opt_in
    )
    return DatasetOut.model_validate(metadata)


@router.get("")
async def list_datasets(_admin: AdminUser, state: StateDep) -> DatasetList:
    """Every exported dataset, newest first."""
    found = store.list_all(state.settings.data_dir)
    return DatasetList(datasets=[DatasetOut.model_validate(m) for m in found])


@router.get("/{version}", responses=errors(400, 404))
async def get_dataset(version: Version, _admin: AdminUser, state: StateDep) -> DatasetOut:
    return DatasetOut.model_validate(store.read(state.settings.data_dir, version))


@router.get(
    "/{version}/files/{name}",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The file: JSON lines (train, heldout) or the metadata JSON",
            "content": {"application/x-ndjson": {}, "application/json": {}},
        },
        **errors(400, 404),
    },
)
async def download_dataset_file(
    version: Version, name: FileName, _admin: AdminUser, state: StateDep
) -> FileResponse:
    path = store.file_path(state.settings.data_dir, version, name)
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[name.rsplit(".", 1)[1]],
        filename=f"chatgate-dataset-{version}-{name}",
        headers={"Cache-Control": "no-store"},
    )


@router.delete("/{version}", status_code=204, responses=errors(400, 404))
async def delete_dataset(version: Version, _admin: AdminUser, state: StateDep) -> Response:
    store.remove(state.settings.data_dir, version)
    return Response(status_code=204)
