"""Push backends against the local FCM stand-in, through the real firebase-admin client."""
