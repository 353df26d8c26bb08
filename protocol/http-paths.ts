/**
 * Webhook ingress, `POST /api/integrations/NAME/events` (NAME captured). It authenticates with its
 * integration's own secret, never the relay or an agent token: the transport's token check and the
 * router's presented-agent-token check both step aside for it.
 */
export const INGRESS_PATH = /^\/api\/integrations\/([^/]+)\/events$/;
