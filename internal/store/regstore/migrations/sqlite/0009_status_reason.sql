-- The reason an operator gave when rejecting or revoking a node, shown
-- with the node (issue 16).
ALTER TABLE reg_nodes ADD COLUMN status_reason TEXT NOT NULL DEFAULT '';
