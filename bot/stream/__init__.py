"""Long connections (DingTalk Stream, Feishu): one holder per app across replicas, by lease."""
