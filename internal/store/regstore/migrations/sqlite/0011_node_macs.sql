-- Every MAC of every node, one row each, kept from reg_nodes.macs (a JSON
-- array) by the triggers below (issue 17): the duplicate-hardware lookups
-- of each registration find a MAC by this index instead of reading every
-- node's array, which made a registration cost grow with the fleet. Empty
-- MACs, which match nothing, are left out. (PostgreSQL's GIN index on
-- macs does this there.)
CREATE TABLE reg_node_macs (
	mac     TEXT NOT NULL,
	node_id TEXT NOT NULL,
	PRIMARY KEY (mac, node_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX reg_node_macs_node ON reg_node_macs (node_id);

INSERT OR IGNORE INTO reg_node_macs (mac, node_id)
	SELECT m.value, n.id FROM reg_nodes n, json_each(n.macs) m WHERE m.value <> '';

CREATE TRIGGER reg_node_macs_insert AFTER INSERT ON reg_nodes BEGIN
	INSERT OR IGNORE INTO reg_node_macs (mac, node_id)
		SELECT value, NEW.id FROM json_each(NEW.macs) WHERE value <> '';
END;
CREATE TRIGGER reg_node_macs_update AFTER UPDATE OF id, macs ON reg_nodes BEGIN
	DELETE FROM reg_node_macs WHERE node_id = OLD.id;
	INSERT OR IGNORE INTO reg_node_macs (mac, node_id)
		SELECT value, NEW.id FROM json_each(NEW.macs) WHERE value <> '';
END;
CREATE TRIGGER reg_node_macs_delete AFTER DELETE ON reg_nodes BEGIN
	DELETE FROM reg_node_macs WHERE node_id = OLD.id;
END;
