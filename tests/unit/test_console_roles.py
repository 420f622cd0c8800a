"""Roles and tenant scopes of the console's users: pure rules."""

from __future__ import annotations

import pytest

from stepstream.console.access import safe_target
from stepstream.console.users_view import within
from stepstream.infra.operators import Operator, Role


def user(role: Role, *tenants: str, every: bool = False) -> Operator:
    return Operator("u", role, None if every else tenants)


def test_each_role_may_do_what_the_ones_below_it_may() -> None:
    assert user(Role.ADMIN, every=True).may(Role.OPERATOR)
    assert user(Role.OPERATOR, "a").may(Role.VIEWER)
    assert not user(Role.VIEWER, "a").may(Role.OPERATOR)
    assert not user(Role.OPERATOR, "a").may(Role.ADMIN)


def test_a_scoped_user_sees_only_its_tenants_and_never_a_record_of_no_tenant() -> None:
    scoped = user(Role.VIEWER, "a", "b")
    assert scoped.sees("a") and scoped.sees("b")
    assert not scoped.sees("c") and not scoped.sees(None)
    assert user(Role.VIEWER, every=True).sees(None)


def test_an_admin_sees_the_users_whose_tenants_are_all_theirs() -> None:
    admin = user(Role.ADMIN, "a", "b")
    assert within(admin, user(Role.VIEWER, "a"))
    assert not within(admin, user(Role.VIEWER, "a", "c"))
    assert not within(admin, user(Role.VIEWER, every=True))
    assert within(user(Role.ADMIN, every=True), user(Role.VIEWER, every=True))


def test_roles_are_named_as_the_command_line_names_them() -> None:
    assert Role.named("operator") is Role.OPERATOR and str(Role.ADMIN) == "admin"
    with pytest.raises(ValueError, match="one of viewer, operator, admin"):
        Role.named("root")


@pytest.mark.parametrize(
    ("asked", "sent_to"),
    [
        ("/executions/e1?x=1", "/executions/e1?x=1"),
        ("https://evil.example/", "/executions"),
        ("//evil.example/x", "/executions"),
        ("javascript:alert(1)", "/executions"),
        ("", "/executions"),
    ],
)
def test_sign_in_sends_back_only_to_a_page_of_the_console(asked: str, sent_to: str) -> None:
    assert safe_target(asked) == sent_to
