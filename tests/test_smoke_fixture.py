from bot.services import tokens as svc


def test_create_then_list(db, settings, now):
    actor = svc.Actor(team_id="T1", user_id="U1")
    with db.sessions.begin() as session:
        svc.create_token(session, box=db.box, actor=actor, label="ci", scope="read",
                         scopes=settings.tokenbot_scopes, now=now)
    with db.sessions.begin() as session:
        page = svc.list_tokens(session, team_id="T1", now=now)
        assert [t.label for t in page.items] == ["ci"]
        assert page.items[0].created_at == now
