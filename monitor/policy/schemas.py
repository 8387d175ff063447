"""What `GET /v1/sources` answers."""

from pydantic import BaseModel


class SourceView(BaseModel):
    id: str
    reference: str
    supports: str
    cited_by: list[str]


class SourceList(BaseModel):
    """Every source id a decision's `sources` may name (docs/clinical-policy.md explains the
    rules that cite them)."""

    sources: list[SourceView]
    documentation: str
