"""Who may do what (AIP-211), asked by the use cases before they touch the store.

Reads are open to every authenticated caller (authentication itself happens
before a call reaches the use cases). Writes are scoped to the caller's own
user: ``users/{sub}`` may be created by ``sub`` (self sign-up), posts are
created under ``users/{sub}`` and changed or deleted by their author;
an administrator may do all of it for anyone.

A denial is ``PermissionDenied`` naming the permission and the resource,
"(or it might not exist)": it is decided from the resource's name alone,
before any lookup, so a denied caller learns nothing about what exists.
"""

from __future__ import annotations

from .domain import PermissionDenied, Principal

CREATE_USER = "microposts.users.create"
CREATE_MICROPOST = "microposts.microposts.create"
UPDATE_MICROPOST = "microposts.microposts.update"
DELETE_MICROPOST = "microposts.microposts.delete"


def require_owner(caller: Principal, permission: str, owner: str, resource_name: str) -> None:
    """Allows ``caller`` to use ``permission`` on a resource of ``owner``, or raises.

    ``owner`` is the username the resource belongs to (for a user, itself);
    ``resource_name`` is what the denial names.
    """
    if caller.admin or caller.username == owner:
        return
    raise PermissionDenied(permission, resource_name)
