"""Controllers: the loop observe → snapshot → schedule → apply → requeue, job lifecycle and
restarts, and the ControlPlane facade the API calls. Must not import api, client or cli."""
