async def test_login_and_permissions(client, make_identity, login):
    creds = make_identity()
    pair = await login(creds)
    assert pair["access_token_expires_in"] == 600
    assert pair["refresh_token_expires_in"] == 604800
    r = await client.get("/api/v1/auth/permissions", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert r.status_code == 200
    assert r.json()["actions"] == ["data_api:execute", "data_api:get_job"]
