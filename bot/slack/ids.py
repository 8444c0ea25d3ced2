"""Every action id, callback id and block id the Slack app uses. Never bare strings."""

from __future__ import annotations

import enum

#: What a Slack user id looks like (``U…`` or ``W…``): payloads, mentions, the CLI's --as.
USER_ID_PATTERN = "[UW][A-Z0-9]{1,30}"


class ActionId(enum.StrEnum):
    # row actions of the token table (the guide's four are buttons, the rest "More…")
    COPY = "token_copy"
    EDIT = "token_edit"
    DISABLE = "token_disable"
    ENABLE = "token_enable"
    DELETE = "token_delete"
    ROTATE = "token_rotate"
    REASSIGN = "token_reassign"  # admins only ("More…" → Reassign…)
    ROW_MORE = "token_more"  # the row's overflow menu ("More…"): one id for every option
    # table navigation
    PAGE_PREVIOUS = "table_page_previous"
    PAGE_NEXT = "table_page_next"
    REFRESH = "table_refresh"
    CREATE_OPEN = "token_create_open"
    CLEAR_FILTER = "table_clear_filter"
    HOME_STATUS = "home_status_filter"
    HOME_OWNER = "home_owner_filter"
    # the owner's DM after someone else acted on their token
    OPEN_TABLE = "table_open"
    # the secret message (copy, creation, rotation)
    HIDE_SECRET = "secret_hide"
    # expiry digests: buttons (full layout) or menus (compact layout)
    ALERT_EXTEND = "alert_extend"
    ALERT_EDIT = "alert_edit"
    ALERT_DISABLE = "alert_disable"
    # rotation with overlap: the rotate modal's inputs, a rotating row's menu options
    ROTATE_MODE = "rotate_mode"
    ROTATE_OVERLAP = "rotate_overlap"
    ROTATION_RETIRE = "token_rotation_retire"
    ROTATION_CANCEL = "token_rotation_cancel"
    # dead-secret alarms (a DM or channel message)
    DEAD_ENABLE = "dead_secret_enable"
    # the reassign modal's user picker; a departed owner's post: per token a user picker
    # (reassign at once) and Disable
    NEW_OWNER_SELECT = "new_owner_select"
    DEPARTED_REASSIGN = "departed_reassign"
    DEPARTED_DISABLE = "departed_disable"
    # the hygiene digest: Disable (a button, or a menu in the compact layout)
    HYGIENE_DISABLE = "hygiene_disable"
    HYGIENE_EDIT = "hygiene_edit"  # the table's Edit modal, over policy rows
    # modal inputs
    LABEL_INPUT = "label_input"
    SCOPE_SELECT = "scope_select"
    EXPIRES_PICK = "expires_pick"
    ALERT_CHANNEL_SELECT = "alert_channel_select"
    NO_EXPIRY_CHECK = "no_expiry_check"
    EXCEPTION_INPUT = "exception_input"


class CallbackId(enum.StrEnum):
    CREATE = "token_create_modal"
    EDIT = "token_edit_modal"
    NOTICE = "tokenbot_notice_modal"
    CONFIRM = "token_confirm_modal"  # an overflow choice that cuts access, confirmed
    ROTATE = "token_rotate_modal"
    REASSIGN = "token_reassign_modal"


class BlockId(enum.StrEnum):
    # modal input blocks (a ValidationError.field maps onto these)
    LABEL = "label"
    SCOPE = "scope"
    EXPIRES = "expires"
    ALERT_CHANNEL = "alert_channel"
    NO_EXPIRY = "no_expiry"
    EXCEPTION = "exception"  # an admin's reason for an expiry beyond the lifetime cap
    # table
    NOTICE = "notice"
    HEADER = "table_header"
    INTRO = "home_intro"
    FILTERS = "home_filters"
    SUMMARY = "table_summary"
    PAGER = "table_pager"
    EMPTY = "table_empty"
    ROW = "row"  # + ":" + public id
    ROW_ACTIONS = "row_actions"  # + ":" + public id
    # secret message / panel
    SECRET = "secret"
    SECRET_NOTE = "secret_note"
    SECRET_ACTIONS = "secret_actions"
    # help
    HELP = "help"
    # the confirmation modal of a "More…" choice
    CONFIRM_WARNING = "confirm_warning"
    # the owner's DM
    OWNER_NOTICE = "owner_notice"
    OWNER_NOTICE_ACTIONS = "owner_notice_actions"
    # expiry digests
    ALERT_HEADER = "alert_header"
    ALERT_ITEM = "alert_item"  # + ":" + public id
    ALERT_ITEM_ACTIONS = "alert_item_actions"  # + ":" + public id
    ALERT_GROUP = "alert_group"  # + ":" + group number
    ALERT_GROUP_ACTIONS = "alert_group_actions"  # + ":" + group number
    # the rotate modal
    ROTATE_WARNING = "rotate_warning"
    ROTATE_MODE = "rotate_mode"
    ROTATE_OVERLAP = "rotate_overlap"
    # dead-secret alarms and rotation notices
    DEAD_SECRET = "dead_secret"
    DEAD_SECRET_ACTIONS = "dead_secret_actions"
    ROTATION_NOTICE = "rotation_notice"
    # the hygiene digest, and the DM of a dormant token the policy disabled
    HYGIENE_HEADER = "hygiene_header"
    HYGIENE_SECTION = "hygiene_section"  # + ":" + section
    HYGIENE_ITEM = "hygiene_item"  # + ":" + section + ":" + public id
    HYGIENE_ITEM_ACTIONS = "hygiene_item_actions"  # + ":" + section + ":" + public id
    HYGIENE_GROUP = "hygiene_group"  # + ":" + section + ":" + group number
    HYGIENE_GROUP_ACTIONS = "hygiene_group_actions"  # + ":" + section + ":" + group number
    DORMANT_DISABLED = "dormant_disabled"
    DORMANT_DISABLED_ACTIONS = "dormant_disabled_actions"
    # a live secret seen in a message: the poster's warning, the owner's and channel's notices
    LEAK = "leak"
    LEAK_ACTIONS = "leak_actions"
    # the reassign modal (a ValidationError.field "new_owner" is shown on it) and notice
    NEW_OWNER = "new_owner"
    REASSIGN_NOTICE = "reassign_notice"
    REASSIGN_NOTICE_ACTIONS = "reassign_notice_actions"
    # a departed owner's post
    DEPARTED_HEADER = "departed_header"
    DEPARTED_ITEM = "departed_item"  # + ":" + public id
    DEPARTED_ITEM_ACTIONS = "departed_actions"  # + ":{public id}:{version}" (the picker's)
    DEPARTED_MORE = "departed_more"


# Option values of our own inputs.
NO_EXPIRY_VALUE = "no_expiry"
ROTATE_NOW_VALUE = "now"
ROTATE_OVERLAP_VALUE = "overlap"


def row_block_id(prefix: BlockId, key: str | int) -> str:
    """Block ids must be unique within a message: one per token row (or digest group)."""
    return f"{prefix}:{key}"
