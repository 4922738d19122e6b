"""Workflow runs (SPEC 2.5): run records, the engine that advances a run, and decisions.

``records`` holds ``runs/<run-id>.yaml`` and the approval files, ``plan`` turns a workflow into
a DAG of steps, ``engine`` starts and carries runs on, ``decisions`` records ``runner approve``,
``reject``, ``continue`` and ``cancel``.
"""

from __future__ import annotations
