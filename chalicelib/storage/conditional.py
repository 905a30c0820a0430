"""Writes that must not replace what is there: "create unless it exists", answered as True or False."""
from __future__ import annotations

from pynamodb.exceptions import PutError
from pynamodb.models import Model


def save_if_absent(item: Model) -> bool:
    """Save `item` only if no item has its key; False when one does (nothing is written then)."""
    hash_key_name = item._hash_key_attribute().attr_name
    try:
        item.save(condition=getattr(type(item), hash_key_name).does_not_exist())
    except PutError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True
