// Volumes are not supported yet: every method says so.
import { unsupported } from "./sandbox.js";

export class VolumeService {
  fromName(_name: string, _params?: { createIfMissing?: boolean }): never {
    throw unsupported("volumes");
  }

  ephemeral(): never {
    throw unsupported("volumes");
  }

  delete(_name: string): never {
    throw unsupported("volumes");
  }
}
